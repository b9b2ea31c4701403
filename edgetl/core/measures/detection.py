"""Detection measures: COCO mAP50-95, mAP50 and per-class AP from pycocotools (the reference
implementation, not rewritten here), and the detector's "agreement": the share of FP32's
detections the artifact reproduces (same class, IoU >= 0.5).

Boxes everywhere are (x1, y1, x2, y2) in the original image's pixels.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetl.core.errors import EdgetlError

AGREEMENT_IOU = 0.5


@dataclass(frozen=True)
class Objects:
    """One image's boxes (N, 4) and classes (N,); `scores` (N,) for detections, None for
    ground truth."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray | None = None

    @classmethod
    def none(cls, scored: bool = False) -> Objects:
        empty = np.zeros((0,), np.float32)
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), empty if scored else None
        )

    def __len__(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DetectionScores:
    map50_95: float  # COCO's primary metric: AP averaged over IoU 0.50:0.05:0.95
    map50: float
    per_class: list[float | None] = field(default_factory=list)  # AP50-95; None: no objects


def coco_map(
    truth: list[Objects], found: list[Objects], sizes: list[tuple[int, int]], classes: int
) -> DetectionScores:
    """COCO bbox mAP of `found` (detections, scored) against `truth`, image by image; `sizes`
    are the images' (width, height)."""
    evaluation = evaluated(truth, found, sizes, classes)
    if evaluation is None:
        return DetectionScores(0.0, 0.0, [None] * classes)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it works
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # [IoU, recall, class, area, max detections]
    per_class: list[float | None] = []
    for k in range(classes):
        values = precision[:, :, k, 0, -1]
        valid = values[values > -1]
        per_class.append(float(valid.mean()) if valid.size else None)
    stats = evaluation.stats
    return DetectionScores(max(float(stats[0]), 0.0), max(float(stats[1]), 0.0), per_class)


def evaluated(
    truth: list[Objects], found: list[Objects], sizes: list[tuple[int, int]], classes: int
) -> Any:
    """pycocotools' COCOeval after evaluate() (every image's matches at every IoU threshold),
    or None when there is nothing to match (no detection, or no object)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not len(truth) == len(found) == len(sizes):
        raise ValueError("truth, detections and sizes must be given for the same images")
    ground = COCO()
    ground.dataset = _dataset(truth, sizes, classes)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it works
        ground.createIndex()
        results = _results(found)
        if not results or not ground.dataset["annotations"]:
            return None
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
    return evaluation


def _dataset(truth: list[Objects], sizes: list[tuple[int, int]], classes: int) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (objects, (width, height)) in enumerate(zip(truth, sizes, strict=True)):
        images.append({"id": image_id, "width": width, "height": height})
        for box, label in zip(objects.boxes, objects.classes, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            })  # fmt: skip
    categories = [{"id": k, "name": str(k)} for k in range(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _results(found: list[Objects]) -> list[dict[str, Any]]:
    results = []
    for image_id, objects in enumerate(found):
        if objects.scores is None:
            raise EdgetlError("detections need scores to be ranked for mAP")
        for box, label, score in zip(objects.boxes, objects.classes, objects.scores, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            if not all(math.isfinite(v) for v in (x1, y1, x2, y2, float(score))):
                raise EdgetlError(f"image {image_id}: a detection is not finite ({box}, {score})")
            results.append({"image_id": image_id, "category_id": int(label),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})  # fmt: skip
    return results


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4): (N, M)."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def agreement(reference: list[Objects], found: list[Objects]) -> float | None:
    """The share of `reference`'s detections (FP32's) that `found` reproduces: the same class
    at IoU >= 0.5, each of `found` matched once, best-scored reference first. None when the
    reference found nothing."""
    total = matched = 0
    for ref, out in zip(reference, found, strict=True):
        total += len(ref)
        if not len(ref) or not len(out):
            continue
        overlaps = iou(ref.boxes, out.boxes)
        overlaps[ref.classes[:, None] != out.classes[None, :]] = 0.0
        order = np.argsort(-ref.scores) if ref.scores is not None else np.arange(len(ref))
        taken: set[int] = set()
        for i in order:
            candidates = [j for j in np.argsort(-overlaps[i]) if j not in taken]
            if candidates and overlaps[i, candidates[0]] >= AGREEMENT_IOU:
                taken.add(int(candidates[0]))
                matched += 1
    return matched / total if total else None
