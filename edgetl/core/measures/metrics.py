"""Accuracy arithmetic on logits, in one place (NumPy only: the device side uses it too)."""

from __future__ import annotations

import numpy as np

from edgetl.core.measures.evidence import BUDGET_TOLERANCE, PairedDrop, paired_counts


def ranked(logits: np.ndarray, k: int) -> np.ndarray:
    """The k highest-scoring classes of each row, best first. Ties go to the lower class
    index, as `predicted` breaks them: a quicksort broke them at random, so on tied logits
    top-1 measured 0.0275 one way and 0.03 the other."""
    scores = np.asarray(logits)
    return np.argsort(-scores, axis=-1, kind="stable")[..., : min(k, scores.shape[-1])]


def predicted(logits: np.ndarray) -> np.ndarray:
    """The top-1 class of each row (ties: the lower class index)."""
    return np.asarray(logits).argmax(-1)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((predicted(logits) == np.asarray(labels)).mean())


def topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = ranked(logits, k)
    return float((top == np.asarray(labels)[:, None]).any(axis=1).mean())


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Share of images whose top-1 class is the same under both."""
    return float((predicted(logits) == predicted(reference)).mean())


def drop_pts(reference_top1: float, top1_: float) -> float:
    """Top-1 points lost against the reference (positive: worse)."""
    return 100 * (reference_top1 - top1_)


def within_budget(drop: float, budget_pts: float) -> bool:
    return drop <= budget_pts + BUDGET_TOLERANCE


def paired_drop(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> PairedDrop:
    """A candidate's top-1 against its reference's on the same images, as discordant counts
    (core/measures/evidence.py bounds the drop from them)."""
    labels = np.asarray(labels)
    return paired_counts(list(predicted(reference) == labels), list(predicted(logits) == labels))
