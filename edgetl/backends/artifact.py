"""The device side's Python API: `edgetl.load(ARTIFACT)` and predictions from it.

Imports no torch, timm, nncf or scikit-learn: an artifact runs with NumPy, Pillow and its
own runtime (ONNX Runtime, OpenVINO).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from edgetl.backends import Runner, resolve, run_all
from edgetl.backends.base import Loaded
from edgetl.core.artifact.archives import is_archive, unpack_archive
from edgetl.core.artifact.signing import trusted_keys
from edgetl.core.errors import EdgetlError
from edgetl.core.images import read_image
from edgetl.core.measures.metrics import ranked
from edgetl.core.preprocess import Preprocess
from edgetl.core.records import MANIFEST_FILE, RUN_FILE, Manifest

T = TypeVar("T")


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


class Model(Loaded):
    """An exported artifact loaded with its runtime; checksums were verified at load."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        runner: Runner,
        load_s: float = 0.0,
        proxy: str | None = None,
    ):
        self.path = path
        self.manifest = manifest
        self.runner = runner
        self.load_s = load_s
        self.proxy = proxy  # the host proxy running the artifact's ONNX, when its runtime is absent

    def _runner_knows(self, name: str, kind: type[T]) -> T | None:
        """What the runner says of itself beyond the Runner protocol, where it says it."""
        found = getattr(self.runner, name, None)
        return found if isinstance(found, kind) else None

    @property
    def size_bytes(self) -> int | None:
        """The size of what the runtime runs where it differs from the manifest's model
        files (a TensorRT engine, built on the device, against its bundle's ONNX)."""
        return self._runner_knows("size_bytes", int)

    @property
    def gpu(self) -> str | None:
        """The GPU the runtime runs on, where it knows (CUDA's name for a TensorRT engine:
        a Jetson has no nvidia-smi)."""
        return self._runner_knows("gpu", str)

    @property
    def max_batch(self) -> int | None:
        """The largest batch a dynamic model takes, where its runtime fixes one (a TensorRT
        engine's optimization profile); None: any."""
        return self._runner_knows("max_batch", int)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def preprocess(self) -> Preprocess:
        return self.manifest.preprocess

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits for preprocessed images, (N, 3, S, S) float32, any N."""
        batch = np.asarray(batch, dtype=np.float32)
        size = self.preprocess.size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise EdgetlError(
                f"logits(): expected images of shape (N, 3, {size}, {size}), got {batch.shape}"
            )
        return run_all(self.runner, batch)

    def predict(self, image: Image.Image | str | Path, top_k: int = 5) -> list[Prediction]:
        """Top-k class names and softmax probabilities for one image (a PIL image or a path)."""
        if top_k < 1:
            raise EdgetlError(f"--top-k {top_k}: must be at least 1")
        if not isinstance(image, Image.Image):
            image = read_image(Path(image))
        probabilities = softmax(self.logits(self.preprocess(image)[None])[0])
        order = ranked(probabilities, top_k)
        return [Prediction(self.classes[i], int(i), float(probabilities[i])) for i in order]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def load(
    path: str | Path,
    threads: int | None = None,
    trust: str | Path | Sequence[str | Path] | None = None,
) -> Any:
    """Load an artifact directory (verifying every checksum, and with `trust` its signature)
    with the runtime it was built for: a Model, or a DetectorModel for a detector's."""
    import time

    from edgetl.core.records.detector import is_detector

    path = Path(path)
    if is_archive(path):
        path = unpack_archive(path)  # checked member by member; then read as any artifact
    if not path.is_dir():
        raise EdgetlError(f"{path}: no such artifact directory; create one with `edgetl export`")
    _not_a_run(path)
    if is_detector(path):
        from edgetl.backends.detector import load_detector

        return load_detector(path, threads, trusted_keys(trust))
    manifest = Manifest.read(path, trust=trusted_keys(trust))
    placement = resolve(manifest, str(path))  # e.g. a TensorRT bundle on a host: its proxy
    spec = manifest.runtime_spec(threads)
    started = time.perf_counter()
    runner = placement.runtime.load(path, spec)
    load_s = time.perf_counter() - started
    check_shapes(path, manifest, runner)
    return Model(path, manifest, runner, load_s, placement.proxy)


def _not_a_run(path: Path) -> None:
    """A fine-tuning run given where an artifact is expected: say so, with its artifacts."""
    if (path / MANIFEST_FILE).exists() or not (path / RUN_FILE).is_file():
        return
    found = sorted(p.parent for p in (path / "export").glob(f"*/{MANIFEST_FILE}"))
    listed = ", ".join(str(p) for p in found)
    remedy = f"its artifacts: {listed}" if found else f"edgetl export {path} --target T"
    raise EdgetlError(f"{path} is a fine-tuning run, not an artifact; {remedy}")


def check_shapes(path: Path, manifest: Manifest, runner: Runner) -> None:
    """The model's graph against its manifest, where the runtime tells its shapes: images
    of the preprocessing's size in, one logit per class out. A mismatch (a swapped model
    file with a re-made manifest) crashed at use with an IndexError or the runtime's own
    message; now exit 2 at load."""
    shapes = getattr(runner, "io_shapes", None)
    if shapes is None:
        return
    inputs, outputs = shapes()
    size = manifest.preprocess.size
    expected = [3, size, size]
    wrong = len(inputs) != 4 or any(
        d is not None and d != e for d, e in zip(inputs[1:], expected, strict=True)
    )
    if wrong:
        raise EdgetlError(
            f"{path}: the model takes input {inputs}, its manifest's preprocessing gives "
            f"[N, 3, {size}, {size}]; the model does not match its manifest: export again"
        )
    width = outputs[-1] if outputs else None
    if width is not None and width != len(manifest.classes):
        raise EdgetlError(
            f"{path}: the model outputs {width} logits, its manifest lists "
            f"{len(manifest.classes)} classes; the model does not match its manifest: export "
            "again"
        )
