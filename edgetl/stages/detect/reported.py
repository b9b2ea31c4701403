"""What a detector's export reports and ships beside the model: its mAP on val and test
beside FP32 PyTorch's (test: measured once, never chosen on), and the reference set, the
first test images with their boxes and both models' detections (core/artifact/
detection_reference.py), so a device measures and checks the artifact with nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetl.backends.detector import detect
from edgetl.core.artifact.detection_reference import DetectionReference
from edgetl.core.data.detection import DetectionSet
from edgetl.core.measures.detection import Objects, agreement, coco_map
from edgetl.core.records.detector import MapAccuracy
from edgetl.stages.detect.compiled import How
from edgetl.stages.detect.guard import MapJudge, ValSet


@dataclass(frozen=True)
class Tested:
    """The test split letterboxed (uint8), FP32 PyTorch's and the artifact's detections."""

    truth: DetectionSet
    crops: np.ndarray
    fp32: list[Objects]
    found: list[Objects]

    def accuracy(self) -> MapAccuracy:
        truth = self.truth
        ours = coco_map(truth.objects, self.found, truth.sizes, len(truth.classes))
        fp32 = coco_map(truth.objects, self.fp32, truth.sizes, len(truth.classes))
        return accuracy(truth, ours, fp32, agreement(self.fp32, self.found))

    def reference(self, count: int) -> DetectionReference:
        picked = min(count, len(self.truth))
        truth = self.truth
        return DetectionReference(
            self.crops[:picked], truth.sizes[:picked], truth.keys[:picked], list(truth.classes),
            truth.objects[:picked], self.fp32[:picked], self.found[:picked],
        )  # fmt: skip


def tested(torch_raw: Any, runner: Any, test: DetectionSet, images: Any, how: How) -> Tested:
    """`images`: the split's ImageSet; `torch_raw`: images -> FP32 PyTorch's raw outputs."""
    crops = np.stack([images.crop(i, how.letterbox) for i in range(len(test))])
    inputs = how.letterbox.normalize(crops)
    view = ValSet(inputs, test, how.letterbox, how.nms)
    fp32 = view.objects(torch_raw(inputs))
    return Tested(test, crops, fp32, detect(runner, inputs, test.sizes, how))


def val_accuracy(judge: MapJudge, runner: Any, val: ValSet, how: How) -> MapAccuracy:
    truth = val.truth
    found = detect(runner, val.images, truth.sizes, how)
    ours = coco_map(truth.objects, found, truth.sizes, len(truth.classes))
    fp32 = coco_map(truth.objects, judge.fp32, truth.sizes, len(truth.classes))
    return accuracy(truth, ours, fp32, agreement(judge.fp32, found))


def accuracy(truth: DetectionSet, ours: Any, fp32: Any, agreed: float | None) -> MapAccuracy:
    return MapAccuracy(
        len(truth), sum(len(o) for o in truth.objects), round(ours.map50_95, 5),
        round(ours.map50, 5), round(fp32.map50_95, 5), round(fp32.map50, 5),
        None if agreed is None else round(agreed, 5),
        [None if v is None else round(v, 5) for v in ours.per_class],
    )  # fmt: skip
