"""Compare a compiled artifact with the model it came from, on real images (no torch needed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgetl.core.fields import write_fields
from edgetl.core.metrics import agreement, top1
from edgetl.core.records import ParityCheck
from edgetl.core.targets import Parity


@dataclass(frozen=True)
class ParityResult:
    n: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    reference_top1: float
    artifact_top1: float
    tolerance: Parity

    @property
    def passed(self) -> bool:
        return (
            self.max_abs_diff <= self.tolerance.max_abs_diff
            and self.agreement >= self.tolerance.min_agreement
        )

    def shortfall(self) -> str:
        """What was measured against what the tolerance asks, for a failure message."""
        return (
            f"max |logit diff| {self.max_abs_diff:.2e} (limit {self.tolerance.max_abs_diff:g}), "
            f"top-1 agreement {self.agreement:.2%} (need {self.tolerance.min_agreement:.0%})"
        )

    def record(self) -> ParityCheck:
        """The manifest's typed record of this check."""
        return ParityCheck(**asdict(self), passed=self.passed)

    def to_dict(self) -> dict[str, object]:
        return write_fields(self.record())


def compare(
    reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, tolerance: Parity
) -> ParityResult:
    diff = np.abs(reference.astype(np.float64) - logits.astype(np.float64))
    return ParityResult(
        n=len(labels),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        agreement=agreement(logits, reference),
        reference_top1=top1(reference, labels),
        artifact_top1=top1(logits, labels),
        tolerance=tolerance,
    )
