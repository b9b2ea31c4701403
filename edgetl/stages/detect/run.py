"""A detection run directory: detector.safetensors (neck and head), history.csv and edgetl.json
(`task: detect`: the backbone, the letterbox, the pyramid, the classes, NMS settings, the
data's fingerprint and the metrics), read back as one typed record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields, write_fields
from edgetl.core.files import read_json, sha256_file
from edgetl.core.letterbox import Letterbox
from edgetl.core.postprocess import NmsSettings
from edgetl.core.records import RUN_FILE, BackboneInfo
from edgetl.core.records.detector import DetectorData

DETECT_SCHEMA = "edgetl.detect-run/1"
DETECTOR_WEIGHTS = "detector.safetensors"  # neck and head
PYRAMID_WEIGHTS = "pyramid.safetensors"  # the frozen backbone's levels: the run needs no --weights


@dataclass(frozen=True)
class DetectMetrics:
    best_epoch: int
    val_map50_95: float
    val_map50: float
    test_map50_95: float  # reported only: no choice was made on test
    test_map50: float
    test_images: int
    test_objects: int
    per_class_test_ap: list[float | None]
    epoch_s_cached: float  # mean seconds per training epoch on cached pyramids


@dataclass
class DetectRunInfo:
    backbone: BackboneInfo
    preprocess: dict[str, Any]  # the letterbox record (core/letterbox.Letterbox)
    channels: list[int]  # the pyramid's levels (strides 8, 16, 32)
    width: int
    depth: int
    classes: list[str]
    nms: NmsSettings
    data: DetectorData
    metrics: DetectMetrics
    versions: dict[str, str]
    weights: dict[str, str] = field(default_factory=dict)  # file -> sha256
    # --unfreeze: the K kept (its pyramid.safetensors holds the fine-tuned stages) and, with
    # auto, each depth's val mAP50-95 and the finding.
    unfreeze: dict[str, Any] | None = field(default=None, metadata={"omit": None})
    # The cache namespace's row precision and the val mAP50-95 it was chosen on (train/
    # detector/rows.py); None without a cache.
    cache_rows: dict[str, Any] | None = field(default=None, metadata={"omit": None})
    task: str = "detect"
    schema: str = DETECT_SCHEMA

    @property
    def letterbox(self) -> Letterbox:
        return Letterbox.from_dict(self.preprocess)

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)


def is_detect_run(path: Path) -> bool:
    try:
        return read_json(path / RUN_FILE, RUN_FILE).get("task") == "detect"
    except EdgetlError:
        return False


def load_detect_run(path: Path) -> DetectRunInfo:
    """The run at `path`, its weights checked against the sha256 it records."""
    file = path / RUN_FILE
    data = read_json(file, f"{RUN_FILE} (is {path} a run directory?)")
    if data.get("schema") != DETECT_SCHEMA:
        raise EdgetlError(f"{file}: not a detection run ({DETECT_SCHEMA}); re-run finetune")
    info = read_fields(DetectRunInfo, data, Source(str(file), strict=False,
                                                  remedy="Re-run `edgetl finetune`."))  # fmt: skip
    for name in (PYRAMID_WEIGHTS, DETECTOR_WEIGHTS):
        weights = path / name
        if not weights.is_file() or sha256_file(weights) != info.weights.get(name):
            raise EdgetlError(
                f"{weights}: missing, or its sha256 differs from the one {RUN_FILE} records; "
                "re-run finetune"
            )
    return info


def run_detector(path: Path, info: DetectRunInfo) -> Any:
    """The run's detector (pyramid + trained head, frozen) as a PyTorch module, from the run's
    own files (checked by load_detect_run)."""
    from safetensors.torch import load_file

    from edgetl.train.detector.model import Detector, DetectorHead
    from edgetl.train.detector.pyramid import PyramidShape, frozen, pyramid_architecture

    pyramid, channels = pyramid_architecture(info.backbone.timm_name, info.backbone.name)
    pyramid.features.load_state_dict(load_file(str(path / PYRAMID_WEIGHTS)))
    shape = PyramidShape(channels, info.letterbox.size)
    head = DetectorHead(shape, len(info.classes), info.width, info.depth)
    head.load_state_dict(load_file(str(path / DETECTOR_WEIGHTS)))
    return Detector(frozen(pyramid), head).eval()
