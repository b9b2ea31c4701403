"""A detector's outputs to detections on the device side, without torch: per-class
non-maximum suppression in NumPy (the same result as torchvision's `batched_nms`, checked by
tests/test_detection.py), for runtimes whose graph carries no NonMaxSuppression."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgetl.core.letterbox import Letterbox
from edgetl.core.measures.detection import Objects, iou


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    score_threshold: float = 0.0,
    max_detections: int | None = None,
) -> Objects:
    """The boxes kept: highest score first, dropping a box of the same class that overlaps a
    kept one by more than `iou_threshold`; boxes scoring at most `score_threshold` are not
    considered. Ties in score keep the earlier box (a stable sort)."""
    candidates = np.flatnonzero(scores > score_threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    kept: list[int] = []
    while order.size and (max_detections is None or len(kept) < max_detections):
        best, rest = order[0], order[1:]
        kept.append(int(best))
        same = classes[rest] == classes[best]
        overlap = iou(boxes[best][None], boxes[rest])[0]
        order = rest[~(same & (overlap > iou_threshold))]
    index = np.asarray(kept, np.int64)
    return Objects(boxes[index], classes[index], scores[index])


@dataclass(frozen=True)
class NmsSettings:
    """How a detector's outputs become detections: stored in the run and the artifact, so
    the device keeps what the guard measured."""

    score_threshold: float = 0.05  # COCO evaluation's usual floor: lower scores add no AP
    iou_threshold: float = 0.6
    max_detections: int = 100
    candidates: int = 1000  # best (location, class) pairs considered before NMS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    settings: NmsSettings,
    letterbox: Letterbox | None = None,
    size: tuple[int, int] | None = None,
) -> Objects:
    """One image's outputs (boxes (L, 4) in input pixels, per-class scores (L, C)) ->
    detections: every (location, class) above the floor, the best `candidates`, per-class NMS;
    mapped to the original image's pixels when `letterbox` and `size` are given."""
    location, label = np.nonzero(scores > settings.score_threshold)
    score = scores[location, label]
    if len(score) > settings.candidates:
        best = np.argsort(-score, kind="stable")[: settings.candidates]
        location, label, score = location[best], label[best], score[best]
    kept = batched_nms(
        boxes[location].astype(np.float32), score.astype(np.float32), label.astype(np.int64),
        settings.iou_threshold, max_detections=settings.max_detections,
    )  # fmt: skip
    if letterbox is None or size is None:
        return kept
    return in_image(Objects(letterbox.to_original(kept.boxes, size), kept.classes, kept.scores))


def in_image(found: Objects) -> Objects:
    """The detections with area left after clipping to the image: a box the head put in the
    letterbox's padding clips to a line, matches nothing and only costs precision (15% of an
    early scenes model's detections)."""
    boxes = found.boxes
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if keep.all():
        return found
    scores = None if found.scores is None else found.scores[keep]
    return Objects(boxes[keep], found.classes[keep], scores)
