"""A detector artifact on the device side: `edgetl.load(ART)` of a detector's artifact, and
its detections in the original image's pixels. NumPy, Pillow and the artifact's runtime only:
the graph gives boxes and per-class scores, NMS runs here (core/postprocess.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
from PIL import Image

from edgetl.backends.base import Loaded, NamedRunner
from edgetl.backends.placement import resolve
from edgetl.core.errors import EdgetlError
from edgetl.core.images import read_image
from edgetl.core.letterbox import Letterbox
from edgetl.core.measures.detection import Objects
from edgetl.core.postprocess import NmsSettings, detections, in_image
from edgetl.core.records.detector import (
    GRAPH_OUTPUTS,
    NMS_IN_GRAPH,
    OUTPUTS,
    DetectorManifest,
)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels
    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.box], "label": self.label,
                "score": round(self.score, 5)}  # fmt: skip


@dataclass
class Timed:
    """Seconds spent in the graph and in NMS (with the mapping back), summed over calls."""

    graph_s: float = 0.0
    nms_s: float = 0.0


class DetectorModel(Loaded):
    """An exported detector loaded with its runtime; checksums were verified at load."""

    def __init__(self, path: Path, manifest: DetectorManifest, runner: NamedRunner,
                 load_s: float = 0.0, proxy: str | None = None):  # fmt: skip
        self.path, self.manifest, self.runner = path, manifest, runner
        self.load_s, self.proxy = load_s, proxy
        self.letterbox: Letterbox = manifest.letterbox
        self.timed = Timed()

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    def objects(self, images: Sequence[Image.Image]) -> list[Objects]:
        """Each image's detections in its own pixels."""
        batch = np.stack([self.letterbox(image) for image in images])
        sizes = [image.size for image in images]
        return detect(self.runner, batch, sizes, self.manifest, self.timed)

    def predict(self, image: Image.Image | str | Path) -> list[Detection]:
        """The detections of one image (a PIL image or a path), best first."""
        if not isinstance(image, Image.Image):
            image = read_image(Path(image))
        found = self.objects([image])[0]
        assert found.scores is not None
        return [
            Detection(_corners(box), self.classes[int(label)], int(label), float(score))
            for box, label, score in zip(found.boxes, found.classes, found.scores, strict=True)
        ]


class Postprocess(Protocol):
    """What turns a detector's outputs into detections (a manifest says it)."""

    @property
    def nms(self) -> NmsSettings: ...

    @property
    def nms_where(self) -> str: ...

    @property
    def letterbox(self) -> Letterbox: ...


def detect(
    runner: NamedRunner,
    batch: np.ndarray,
    sizes: Sequence[tuple[int, int]],
    how: Postprocess,
    timed: Timed | None = None,
) -> list[Objects]:
    """Letterboxed images -> each one's detections in its original pixels: NumPy NMS after
    the graph (`device-numpy`), or the graph's own NMS (`graph`), one image at a time."""
    found = []
    letterbox = how.letterbox
    for image, size in zip(batch, sizes, strict=True):
        started = time.perf_counter()
        raw = runner.named(np.ascontiguousarray(image[None], np.float32))
        middle = time.perf_counter()
        if how.nms_where == NMS_IN_GRAPH:
            boxes = letterbox.to_original(raw[GRAPH_OUTPUTS[0]], size)
            scores = raw[GRAPH_OUTPUTS[1]].astype(np.float32)
            classes = raw[GRAPH_OUTPUTS[2]].astype(np.int64)
            found.append(in_image(Objects(boxes, classes, scores)))
        else:
            found.append(detections(raw[OUTPUTS[0]][0], raw[OUTPUTS[1]][0], how.nms, letterbox,
                                    size))  # fmt: skip
        if timed is not None:
            timed.graph_s += middle - started
            timed.nms_s += time.perf_counter() - middle
    return found


def in_turn(
    runner: NamedRunner, how: Postprocess, inputs: np.ndarray, sizes: Sequence[tuple[int, int]]
) -> Callable[[], list[Objects]]:
    """One batch-1 detection a call, over `inputs` (letterboxed images) in turn: what a
    timing loop runs (NMS's work depends on each image's detections, so not one image)."""
    state = {"i": 0}

    def once() -> list[Objects]:
        k = state["i"] = (state["i"] + 1) % len(inputs)
        return detect(runner, inputs[k : k + 1], sizes[k : k + 1], how)

    return once


def _corners(box: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


def load_detector(path: Path, threads: int | None = None, trust: Sequence[Any] = ()
                  ) -> DetectorModel:  # fmt: skip
    manifest = DetectorManifest.read(path, trust=trust)
    placement = resolve(manifest, str(path))
    started = time.perf_counter()
    runner = placement.runtime.load(path, manifest.runtime_spec(threads))
    if not hasattr(runner, "named"):
        raise EdgetlError(f"{path}: its runtime {manifest.backend} runs no detector here")
    named = cast(NamedRunner, runner)
    return DetectorModel(path, manifest, named, time.perf_counter() - started, placement.proxy)
