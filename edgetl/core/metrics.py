"""Accuracy arithmetic on logits, in one place (NumPy only: the device side uses it too)."""

from __future__ import annotations

import numpy as np

from edgetl.core.evidence import BUDGET_TOLERANCE, PairedDrop, paired_counts


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


def topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Share of images whose top-1 class is the same under both."""
    return float((np.asarray(logits).argmax(1) == np.asarray(reference).argmax(1)).mean())


def drop_pts(reference_top1: float, top1_: float) -> float:
    """Top-1 points lost against the reference (positive: worse)."""
    return 100 * (reference_top1 - top1_)


def within_budget(drop: float, budget_pts: float) -> bool:
    return drop <= budget_pts + BUDGET_TOLERANCE


def paired_drop(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> PairedDrop:
    """A candidate's top-1 against its reference's on the same images, as discordant counts
    (core/evidence.py bounds the drop from them)."""
    labels = np.asarray(labels)
    return paired_counts(
        list(np.asarray(reference).argmax(1) == labels),
        list(np.asarray(logits).argmax(1) == labels),
    )
