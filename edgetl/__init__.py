"""edgetl: transfer learning for edge devices, from fine-tuning to the on-device benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from edgetl.backends.artifact import Model
    from edgetl.stages.search.search import SearchResult


def load(path: Any, threads: int | None = None, trust: Any = None) -> Model:
    """An exported artifact, ready to predict: `edgetl.load(ART).predict(image)`.

    `trust`: a public key file (or several) the artifact must be signed by
    (`edgetl export --sign KEY`); without it, checksums and the manifest digest are checked.
    """
    from edgetl.backends.artifact import load as _load

    return _load(path, threads, trust)


def search(
    data: Any,
    target: str,
    out: Any,
    max_latency_ms: float | None = None,
    quiet: bool = True,
    **options: Any,
) -> SearchResult:
    """The most accurate model for `data` within `max_latency_ms` on `target`, or within
    `max_latency_x` times the latency of the artifact `reference` (see `edgetl search
    --help`; the options are SearchOptions' fields: max_size_mb, backbones, sizes, heads,
    precisions, budget_minutes, max_latency_x, reference, ...). The result's `.chosen` is
    the typed record of the chosen candidate, `out/chosen` its artifact."""
    from pathlib import Path

    from edgetl.core.events import reporting
    from edgetl.core.ui import make_console
    from edgetl.stages.search.options import SearchOptions
    from edgetl.stages.search.search import search as _search

    opts = SearchOptions(data=str(data), target=target, out=Path(out),
                         max_latency_ms=max_latency_ms, **options)  # fmt: skip
    with reporting(make_console(quiet=quiet)):
        return _search(opts)
