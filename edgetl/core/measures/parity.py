"""Compare a compiled artifact with the model it came from, on real images (no torch needed).

The result is the manifest's own record (ParityCheck): measured once, stored as measured."""

from __future__ import annotations

import numpy as np

from edgetl.core.measures.metrics import agreement, top1
from edgetl.core.records import ParityCheck
from edgetl.core.targets import Parity


def relative_error(reference: np.ndarray, logits: np.ndarray) -> float:
    """The largest logit error in units of its image's own logit range (max - min of the
    reference's logits for that image), over all images: scale-free, which an absolute bound
    is not, and FP16's rounding grows with the values it rounds. On three trained
    EfficientNet-Lite0 heads a correct FP16 graph stayed at 0.012-0.031 and one with a
    single conv channel's sign flipped reached 0.13-0.61 (tools/fp16_parity.py)."""
    reference64 = reference.astype(np.float64)
    diff = np.abs(reference64 - logits.astype(np.float64)).max(axis=1)
    spread = reference64.max(axis=1) - reference64.min(axis=1)
    ratio = diff / np.maximum(spread, np.finfo(np.float64).tiny)  # a flat row: any diff fails
    return float(ratio.max()) if len(ratio) else 0.0


def compare(
    reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, tolerance: Parity
) -> ParityCheck:
    diff = np.abs(reference.astype(np.float64) - logits.astype(np.float64))
    max_abs_diff = float(diff.max())
    rel = relative_error(reference, logits)
    agreed = agreement(logits, reference)
    within = (tolerance.max_abs_diff is None or max_abs_diff <= tolerance.max_abs_diff) and (
        tolerance.max_rel_diff is None or rel <= tolerance.max_rel_diff
    )
    return ParityCheck(
        n=len(labels),
        max_abs_diff=max_abs_diff,
        mean_abs_diff=float(diff.mean()),
        agreement=agreed,
        reference_top1=top1(reference, labels),
        artifact_top1=top1(logits, labels),
        tolerance=tolerance,
        passed=within and agreed >= tolerance.min_agreement,
        max_rel_diff=rel,
    )
