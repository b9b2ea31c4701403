"""What the guard tried and what it chose: typed records, no printing (tables are the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from edgetl.backends import Runner
from edgetl.core.errors import CheckFailed
from edgetl.core.fields import plain
from edgetl.core.measures.evidence import smallest_certifiable_pts
from edgetl.core.records import Attempt, Sensitivity
from edgetl.core.records.sensitivity import PathStep, SensitivityReport, layer_rows

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
class Ranked:
    """One quantized layer (or layers reading one tensor) in the ranker's order."""

    layer: str
    score: float  # what orders them: INT8's logit error removed (share), or val mAP brought back
    metric: float  # the task's val metric with it alone kept float, on the ranking's images


@dataclass(frozen=True)
class Ranking:
    """The ranker's measurements: every quantizable layer, most sensitive first, each with
    the task's metric on `images` val images (FP32's and plain INT8's beside them)."""

    layers: list[Ranked]
    images: int
    fp32: float
    plain: float
    metric: str  # "top1" | "map50_95"

    def names(self, count: int) -> list[str]:
        return [r.layer for r in self.layers[:count]]


@dataclass(frozen=True)
class GuardReport:
    fp32_top1: float
    n: int
    budget_pts: float
    attempts: list[Attempt]
    ranking: Ranking | None  # None: the ladder stopped before ranking
    quantize_s: float
    guard_s: float
    confidence: float
    rule: str  # core/measures/evidence.RULES
    quantizable: list[str] = field(default_factory=list)  # layers the guard may keep float

    @property
    def chosen(self) -> Attempt:
        return self.attempts[-1]

    def ranked(self, count: int = 20) -> list[Sensitivity]:
        """The `count` most sensitive layers, as the manifest records them."""
        found = self.ranking.layers[:count] if self.ranking is not None else []
        return [Sensitivity(r.layer, r.score) for r in found]

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
            "float_precision": "float16" if chosen.float16 else None,
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


NOT_RANKED = ("not ranked: the ladder stopped before the float-layer rungs "
              "(export --sensitivity ranks them anyway)")  # fmt: skip


def sensitivity_report(
    task: str,
    attempts: list[Attempt],
    ranking: Ranking | None,
    quantizable: list[str],
    ranked_by: str,
) -> SensitivityReport:
    """sensitivity.json's content: every quantizable layer with its final precision (and,
    where ranked, its metric), and the ladder's path to the kept attempt."""
    chosen = attempts[-1]
    ranked = [(r.layer, r.score, r.metric) for r in ranking.layers] if ranking else []
    path = [PathStep(a.name, round(a.top1, 5), a.drop_upper_pts, a.verdict, len(a.float_layers))
            for a in attempts]  # fmt: skip
    return SensitivityReport(
        task, ranking.metric if ranking else ("top1" if task == "classify" else "map50_95"),
        ranking.images if ranking else None,
        round(ranking.fp32, 5) if ranking else None,
        round(ranking.plain, 5) if ranking else None,
        ranked_by if ranking else NOT_RANKED,
        layer_rows(quantizable, chosen.float_layers, ranked,
                   "float16" if chosen.float16 else "float32"), path, chosen.name,
    )  # fmt: skip
