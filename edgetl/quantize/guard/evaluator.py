"""Measuring a candidate: its top-1 on the validation images against FP32's, on the runtime
the model will run on (integer kernels round differently between runtimes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from edgetl.backends import Runner, run_all
from edgetl.core.evidence import DEFAULT_CONFIDENCE
from edgetl.core.metrics import agreement, drop_pts, paired_drop, top1
from edgetl.quantize.guard.report import Attempt, Measured

LoadOnnx = Callable[[onnx.ModelProto], Runner]


@dataclass(frozen=True)
class Validation:
    """The images every guard decision is made on (the run's val split), preprocessed."""

    images: np.ndarray
    labels: np.ndarray
    seed: int = 0

    def __len__(self) -> int:
        return len(self.labels)


# The confidence of the drop's upper bound the guard reports. Reported only: the guard
# still decides on the point estimate (issue 25 changes the decision).
CONFIDENCE = DEFAULT_CONFIDENCE


@dataclass(frozen=True)
class Evaluator:
    """FP32's answers on the validation images, and `load`: the target's runtime (or the host
    proxy its profile names) that measures every candidate."""

    validation: Validation
    load: LoadOnnx
    fp32_runner: Runner
    fp32_logits: np.ndarray

    @classmethod
    def for_fp32(cls, validation: Validation, load: LoadOnnx, fp32: onnx.ModelProto) -> Evaluator:
        runner = load(fp32)
        return cls(validation, load, runner, run_all(runner, validation.images))

    @property
    def n(self) -> int:
        return len(self.validation)

    @property
    def fp32_top1(self) -> float:
        return top1(self.fp32_logits, self.validation.labels)

    def measure(self, name: str, model: onnx.ModelProto, **details: Any) -> Measured[Any]:
        runner = self.load(model)
        logits = run_all(runner, self.validation.images)
        found = top1(logits, self.validation.labels)
        paired = paired_drop(self.fp32_logits, logits, self.validation.labels)
        attempt = Attempt(
            name=name,
            top1=found,
            drop_pts=drop_pts(self.fp32_top1, found),
            agreement=agreement(logits, self.fp32_logits),
            max_abs_diff=float(np.abs(logits - self.fp32_logits).max()),
            worse=paired.worse,
            better=paired.better,
            drop_upper_pts=round(paired.upper_pts(CONFIDENCE), 4),
            confidence=CONFIDENCE,
            **details,
        )
        return Measured(attempt, model, runner, logits)
