"""What the guard tried and what it chose: typed records, no printing (tables are the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from edgetl.backends import Runner
from edgetl.core.errors import CheckFailed
from edgetl.core.fields import plain
from edgetl.core.measures.evidence import smallest_certifiable_pts
from edgetl.core.records import Attempt, Sensitivity

M = TypeVar("M")  # a model: an onnx.ModelProto in edgetl, anything in the ladder's tests


@dataclass(frozen=True)
class Measured(Generic[M]):
    """A candidate, the runner that measured it and its logits: kept so the chosen model is
    never run again (the export reuses them)."""

    attempt: Attempt
    model: M
    runner: Runner
    logits: np.ndarray


@dataclass(frozen=True)
class GuardReport:
    fp32_top1: float
    n: int
    budget_pts: float
    attempts: list[Attempt]
    sensitivities: list[tuple[str, float]]
    quantize_s: float
    guard_s: float
    confidence: float
    rule: str  # core/measures/evidence.RULES

    @property
    def chosen(self) -> Attempt:
        return self.attempts[-1]

    def ranked(self, count: int = 20) -> list[Sensitivity]:
        """The `count` most sensitive layers, as the manifest records them."""
        return [Sensitivity(name, score) for name, score in self.sensitivities[:count]]

    @property
    def best_drop(self) -> float:
        return min(a.drop_pts for a in self.attempts)

    @property
    def best_bound(self) -> float:
        return min(a.drop_upper_pts for a in self.attempts if a.drop_upper_pts is not None)

    def fields(self) -> dict[str, Any]:
        """The guard's part of the manifest's QuantizationRecord, typed (all on val)."""
        chosen = self.chosen
        return {
            "fp32_top1": self.fp32_top1,
            "int8_top1": chosen.top1,
            "drop_pts": round(chosen.drop_pts, 4),
            "budget_pts": self.budget_pts,
            "n": self.n,
            "agreement": chosen.agreement,
            "max_abs_diff": chosen.max_abs_diff,
            "float_layers": chosen.float_layers,
            "head_refit": chosen.head_refit,
            "attempts": self.attempts,
            "sensitivities": self.ranked(),
            "quantize_s": round(self.quantize_s, 2),
            "guard_s": round(self.guard_s, 2),
            "rule": self.rule,
            "confidence": self.confidence,
            "drop_upper_pts": chosen.drop_upper_pts,
        }

    def to_dict(self) -> dict[str, Any]:
        return plain(self.fields())


@dataclass(frozen=True)
class GuardResult(Generic[M]):
    """The INT8 model that meets the budget, with the runner and validation logits it was
    measured with, the report of everything tried, and FP32's runner and logits on the same
    images (the reference every attempt was measured against)."""

    model: M
    runner: Runner
    logits: np.ndarray
    report: GuardReport
    fp32_runner: Runner
    fp32_logits: np.ndarray


class GuardFailed(CheckFailed):
    """No candidate met the budget; `report` says what was tried (the CLI prints it)."""

    def __init__(self, report: GuardReport):
        self.report = report
        confidence, n = report.confidence, report.n
        super().__init__(
            f"INT8 misses the accuracy budget: no candidate's drop is shown to be within "
            f"--max-accuracy-drop {report.budget_pts:.2f} at {confidence:.0%} confidence "
            f"(best bound {report.best_bound:.2f} pts, best drop on val "
            f"{report.best_drop:.2f}; {n} val images can certify "
            f"{smallest_certifiable_pts(n, confidence):.2f} at best); no artifact written. "
            "Try more or other calibration images (--calib-data), another --recipe, a larger "
            "guard.max_float_layers in the recipe, more val images, or --precision fp32"
        )
