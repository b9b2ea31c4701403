"""The evidence behind an INT8 detector's mAP drop: a paired bootstrap over the val images.

mAP is not a sum over images, so the guard's paired count of images made worse (top-1) has no
analogue; the bootstrap resamples images (with their objects and both models' detections
together) and reads the drop's one-sided upper bound at `confidence` off the resampled
drops. Each image is matched once by pycocotools (COCOeval.evaluate); a resample only
re-accumulates those matches with COCOeval.accumulate's arithmetic (written here because
pycocotools cannot count an image twice), checked to give pycocotools' own mAP50-95 on the
full set (tests/test_detection.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetl.core.measures.detection import Objects, evaluated

RESAMPLES = 200


@dataclass(frozen=True)
class Matches:
    """Per class, per image: detections' scores, their matches at each IoU threshold, and the
    count of objects that count (not ignored)."""

    scores: list[list[np.ndarray]]  # [class][image] (D,)
    matched: list[list[np.ndarray]]  # [class][image] (T, D) bool
    ignored: list[list[np.ndarray]]  # [class][image] (T, D) bool
    objects: np.ndarray  # (class, image) counts
    thresholds: int
    recall_points: np.ndarray

    @classmethod
    def of(cls, truth: list[Objects], found: list[Objects], sizes: list[tuple[int, int]],
           classes: int) -> Matches:  # fmt: skip
        evaluation = evaluated(truth, found, sizes, classes)
        images, thresholds = len(truth), 10
        empty = np.zeros((thresholds, 0), bool)
        scores = [[np.zeros(0)] * images for _ in range(classes)]
        matched = [[empty] * images for _ in range(classes)]
        ignored = [[empty] * images for _ in range(classes)]
        objects = np.zeros((classes, images), np.int64)
        for image, item in enumerate(truth):
            np.add.at(objects[:, image], item.classes, 1)
        if evaluation is None:
            return cls(scores, matched, ignored, objects, thresholds, np.linspace(0, 1, 101))
        areas = len(evaluation.params.areaRng)
        limit = evaluation.params.maxDets[-1]
        for k in range(classes):
            for image in range(images):
                entry: Any = evaluation.evalImgs[k * areas * images + image]  # area "all"
                if entry is None:
                    continue
                order = np.argsort(-np.asarray(entry["dtScores"]), kind="mergesort")[:limit]
                scores[k][image] = np.asarray(entry["dtScores"])[order]
                matched[k][image] = np.asarray(entry["dtMatches"])[:, order] > 0
                ignored[k][image] = np.asarray(entry["dtIgnore"])[:, order].astype(bool)
        return cls(scores, matched, ignored, objects, len(evaluation.params.iouThrs),
                   np.asarray(evaluation.params.recThrs))  # fmt: skip

    def map50_95(self, images: np.ndarray) -> float:
        """mAP50-95 over `images` (indices; repeats count again), as COCOeval.accumulate."""
        values = []
        for k in range(len(self.scores)):
            total = int(self.objects[k, images].sum())
            if not total:
                continue  # no object of the class: not averaged (COCO's -1)
            scores = np.concatenate([self.scores[k][i] for i in images])
            order = np.argsort(-scores, kind="mergesort")
            matched = np.concatenate([self.matched[k][i] for i in images], 1)[:, order]
            ignored = np.concatenate([self.ignored[k][i] for i in images], 1)[:, order]
            for t in range(self.thresholds):
                values.append(self._ap(matched[t], ignored[t], total))
        return float(np.mean(values)) if values else 0.0

    def _ap(self, matched: np.ndarray, ignored: np.ndarray, total: int) -> float:
        tp = np.cumsum(matched & ~ignored).astype(float)
        fp = np.cumsum(~matched & ~ignored).astype(float)
        recall = tp / total
        precision = tp / np.maximum(tp + fp, np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        where = np.searchsorted(recall, self.recall_points, side="left")
        points = np.zeros(len(self.recall_points))
        valid = where < len(precision)
        points[valid] = precision[where[valid]]
        return float(points.mean())


@dataclass(frozen=True)
class MapDrop:
    """FP32's mAP50-95 minus the candidate's on val, in points, and the drop's upper bound."""

    n: int
    reference: float
    found: float
    drop_pts: float
    upper_pts: float
    confidence: float


def map_drop(
    truth: list[Objects],
    reference: list[Objects],
    found: list[Objects],
    sizes: list[tuple[int, int]],
    classes: int,
    confidence: float,
    seed: int = 0,
) -> MapDrop:
    """The paired bootstrap: the same resampled images for both models, RESAMPLES times."""
    ours = Matches.of(truth, reference, sizes, classes)
    theirs = Matches.of(truth, found, sizes, classes)
    everything = np.arange(len(truth))
    base, cand = ours.map50_95(everything), theirs.map50_95(everything)
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(RESAMPLES):
        sample = rng.integers(0, len(truth), len(truth))
        drops.append(ours.map50_95(sample) - theirs.map50_95(sample))
    upper = max(float(np.quantile(drops, confidence)), base - cand) * 100
    return MapDrop(len(truth), base, cand, (base - cand) * 100, upper, confidence)
