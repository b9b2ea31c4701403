"""Top-1/top-5 accuracy, per-class accuracy, confusion matrix and agreement, from logits."""

from __future__ import annotations

import numpy as np

from edgetl.core.measures.metrics import agreement as agreement_of
from edgetl.core.measures.metrics import predicted as predicted_of
from edgetl.core.measures.metrics import top1, topk
from edgetl.core.records import Accuracy, BenchAccuracy


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def accuracy_report(
    logits: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray | None,
    classes: list[str],
    absent_classes: list[str],
) -> BenchAccuracy:
    """The report's `accuracy` block; per-class numbers show where INT8 damage hides."""
    predicted = predicted_of(logits)
    matrix = confusion_matrix(predicted, labels, len(classes))
    per_class = {
        name: Accuracy(int(matrix[i].sum()), float(matrix[i, i] / matrix[i].sum()))
        for i, name in enumerate(classes)
        if matrix[i].sum() > 0
    }
    agreement = None
    if reference is not None:
        agreement = agreement_of(logits, reference)
    return BenchAccuracy(
        top1=top1(logits, labels),
        top5=topk(logits, labels, 5),
        n=int(len(labels)),
        agreement=agreement,
        per_class=per_class,
        confusion=matrix.tolist(),
        absent_classes=absent_classes,
        predictions=predicted.tolist(),
    )
