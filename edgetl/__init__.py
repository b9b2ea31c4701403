"""edgetl: transfer learning for edge devices, from fine-tuning to the on-device benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from edgetl.backends.artifact import Model


def load(path: Any, threads: int | None = None, trust: Any = None) -> Model:
    """An exported artifact, ready to predict: `edgetl.load(ART).predict(image)`.

    `trust`: a public key file (or several) the artifact must be signed by
    (`edgetl export --sign KEY`); without it, checksums and the manifest digest are checked.
    """
    from edgetl.backends.artifact import load as _load

    return _load(path, threads, trust)
