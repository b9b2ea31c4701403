"""A detector architecture's latency before any training: the backbone's pyramid with a neck
and head of random weights (latency depends on the shapes, not the values), exported like a
trained one, INT8-quantized where asked (calibrated on a few train images, the decode kept
float as every detector recipe keeps it), compiled by the target's backend and timed batch 1
by its runtime here, every architecture in the same interleaved rounds.

The graph is timed without NMS: a trained artifact is this graph plus NMS (in the graph or
in NumPy after it) and the mapping back to image pixels, so its time is a lower bound of
the artifact's. An architecture whose bound is already over --max-latency at a precision
cannot meet it there once trained, and the search does not train or export it for that
precision. (The guard may keep layers of INT8 float: they add time, never remove it.)"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgetl.backends.probe import Probe, TimedArch
from edgetl.core.data.detection_splits import DetectionSplits
from edgetl.core.letterbox import Letterbox
from edgetl.core.targets import TargetProfile
from edgetl.core.ui import heartbeat
from edgetl.stages.detect.export import DECODE_FLOAT, detector_onnx, prepared_graph
from edgetl.stages.detect.training import DEPTH, WIDTH, detector_pyramid
from edgetl.stages.search.latency import compile_graph, load_probe, time_archs
from edgetl.train.detector.model import Detector, DetectorHead

CALIBRATION_IMAGES = 16  # for timing an INT8 architecture only: its mAP comes after training


@dataclass(frozen=True)
class Arch:
    backbone: str
    size: int
    precision: str

    @property
    def key(self) -> str:
        return f"{self.backbone}-{self.size}-{self.precision}"


def time_untrained(
    archs: list[Arch],
    weights: Path | None,
    splits: DetectionSplits,
    profile: TargetProfile,
    iterations: int,
) -> dict[str, TimedArch]:
    """Every architecture's graph (no NMS, random head) timed batch 1 here, by key."""
    loaded = {}
    with tempfile.TemporaryDirectory(prefix="edgetl-detect-search-") as tmp:
        for arch in archs:
            with heartbeat(f"{arch.key}: an untrained head compiled for {profile.name}"):
                folder = Path(tmp) / arch.key
                probe = compile_untrained(arch, weights, splits, profile, folder)
                single = np.zeros((1, 3, arch.size, arch.size), np.float32)
                loaded[arch.key] = load_probe(probe, folder, profile, single)
    with heartbeat(f"timing {len(loaded)} untrained detectors (no NMS), batch 1"):
        return time_archs(loaded, iterations)


def compile_untrained(
    arch: Arch, weights: Path | None, splits: DetectionSplits, profile: TargetProfile, out: Path
) -> Probe:
    """`arch` with a random neck and head, compiled by the target's backend into `out` as an
    artifact would be (the decode float), with its probe.json (`edgetl probe-latency` times
    it, here or on a lab device)."""
    backbone, pyramid, shape = detector_pyramid(arch.backbone, weights, arch.size)
    torch.manual_seed(0)
    model = Detector(pyramid, DetectorHead(shape, len(splits.classes), WIDTH, DEPTH)).eval()
    letterbox = backbone.preprocess
    assert isinstance(letterbox, Letterbox)
    images = splits.images("train")
    count = min(CALIBRATION_IMAGES, len(images))
    calibration = np.stack([images.preprocessed(i, letterbox) for i in range(count)])
    with tempfile.TemporaryDirectory(prefix="edgetl-detect-arch-") as tmp:
        path = Path(tmp) / "model.onnx"
        detector_onnx(model, arch.size, path, profile.opset)
        return compile_graph(path, arch.size, arch.precision, calibration, profile, out,
                             prepared_graph, DECODE_FLOAT)  # fmt: skip
