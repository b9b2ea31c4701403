"""A detector's answers, image by image: the detections a deployed model acts on (score at or
above ANSWER_SCORE), kept in a bench report as plain rows so two reports (two devices, two
runtimes, a baseline) can be compared image by image, as classifiers' top-1 answers are.
mAP alone hides an INT8 peer that moves its boxes on a few images while gaining on others.
Device side: no torch."""

from __future__ import annotations

import numpy as np

from edgetl.core.measures.detection import Objects, agreement

# The detections a deployed detector acts on. mAP ranks every box down to the 0.05 floor,
# where which near-tie fills the last places is arbitrary (compiled.py: 96.6% agreement on an
# untrained head at equal mAP); a threshold users ship at is where answers must not move.
ANSWER_SCORE = 0.5
Row = list[float]  # x1, y1, x2, y2 (image pixels, 0.1 px), class, score (4 decimals)


def answer_rows(found: list[Objects], min_score: float = ANSWER_SCORE) -> list[list[Row]]:
    """Each image's detections scoring at least `min_score`, as rows."""
    rows = []
    for objects in found:
        assert objects.scores is not None
        keep = objects.scores >= min_score
        rows.append([
            [*(round(float(v), 1) for v in box), float(label), round(float(score), 4)]
            for box, label, score in zip(objects.boxes[keep], objects.classes[keep],
                                         objects.scores[keep], strict=True)
        ])  # fmt: skip
    return rows


def as_objects(rows: list[list[Row]]) -> list[Objects]:
    """Rows (a bench report's `answers`) back into each image's detections."""
    found = []
    for image in rows:
        array = np.asarray(image, np.float64).reshape(-1, 6)
        found.append(Objects(array[:, :4].astype(np.float32), array[:, 4].astype(np.int64),
                             array[:, 5].astype(np.float32)))  # fmt: skip
    return found


def same_answers(mine: list[Objects], theirs: list[Objects]) -> tuple[float, int]:
    """The share of images whose answers match the other's one to one (as many detections,
    each of theirs reproduced: same class, IoU >= 0.5), and how many images do not."""
    if len(mine) != len(theirs):
        raise ValueError("answers of different images cannot be compared")
    differing = sum(not _same(a, b) for a, b in zip(mine, theirs, strict=True))
    return (round(1 - differing / len(mine), 4) if mine else 1.0), differing


def _same(mine: Objects, theirs: Objects) -> bool:
    if len(mine) != len(theirs):
        return False
    return not len(theirs) or agreement([theirs], [mine]) == 1.0


def confident_agreement(reference: list[Objects], found: list[Objects]) -> float | None:
    """The share of `reference`'s answers (score >= ANSWER_SCORE) that `found`'s answers
    reproduce; None when the reference answers nothing."""
    return agreement(as_objects(answer_rows(reference)), as_objects(answer_rows(found)))
