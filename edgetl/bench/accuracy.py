"""Top-1/top-5 accuracy and agreement with a reference, from logits."""

from __future__ import annotations

import numpy as np


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def accuracy_report(
    logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None
) -> dict[str, float | int | None]:
    agreement = None
    if reference is not None:
        agreement = float((reference.argmax(1) == logits.argmax(1)).mean())
    return {
        "top1": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5),
        "n": int(len(labels)),
        "agreement": agreement,
    }
