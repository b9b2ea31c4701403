"""A detector's outputs to detections on the device side, without torch: per-class
non-maximum suppression in NumPy (the same result as torchvision's `batched_nms`, checked by
tests/test_detection.py), for runtimes whose graph carries no NonMaxSuppression."""

from __future__ import annotations

import numpy as np

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
