"""Compare a compiled artifact with the model it came from, on real images (no torch needed).

The result is the manifest's own record (ParityCheck): measured once, stored as measured."""

from __future__ import annotations

import numpy as np

from edgetl.core.metrics import agreement, top1
from edgetl.core.records import ParityCheck
from edgetl.core.targets import Parity


def compare(
    reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, tolerance: Parity
) -> ParityCheck:
    diff = np.abs(reference.astype(np.float64) - logits.astype(np.float64))
    max_abs_diff = float(diff.max())
    agreed = agreement(logits, reference)
    return ParityCheck(
        n=len(labels),
        max_abs_diff=max_abs_diff,
        mean_abs_diff=float(diff.mean()),
        agreement=agreed,
        reference_top1=top1(reference, labels),
        artifact_top1=top1(logits, labels),
        tolerance=tolerance,
        passed=max_abs_diff <= tolerance.max_abs_diff and agreed >= tolerance.min_agreement,
    )
