"""Measuring a candidate: its top-1 on the validation images against FP32's, on the runtime
the model will run on (integer kernels round differently between runtimes), and judging it
by the guard's rule (core/measures/evidence.decide): val's paired bound, then flips on unlabelled
training images, measured only for a candidate whose val bound fits (one in a climb, most
often), so the extra images cost one pass of FP32 and one of that candidate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import onnx

from edgetl.backends import Runner, run_all
from edgetl.core.measures.evidence import DEFAULT_CONFIDENCE, Flips, PairedDrop, decide
from edgetl.core.measures.metrics import agreement, drop_pts, paired_drop, predicted, top1
from edgetl.quantize.guard.report import Attempt, Measured

LoadOnnx = Callable[[onnx.ModelProto], Runner]


@dataclass(frozen=True)
class Validation:
    """The images every guard decision is made on (the run's val split), preprocessed."""

    images: np.ndarray
    labels: np.ndarray
    seed: int = 0
    # Preprocessed training images the calibration did not use (no label needed): where
    # candidates' flips against FP32 are counted. A callable: decoded on first need.
    unlabelled: Callable[[], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Evaluator:
    """FP32's answers on the validation images, and `load`: the target's runtime (or the host
    proxy its profile names) that measures every candidate."""

    validation: Validation
    load: LoadOnnx
    fp32_runner: Runner
    fp32_logits: np.ndarray
    confidence: float = DEFAULT_CONFIDENCE

    @classmethod
    def for_fp32(
        cls,
        validation: Validation,
        load: LoadOnnx,
        fp32: onnx.ModelProto,
        confidence: float = DEFAULT_CONFIDENCE,
    ) -> Evaluator:
        runner = load(fp32)
        return cls(validation, load, runner, run_all(runner, validation.images), confidence)

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
            drop_upper_pts=round(paired.upper_pts(self.confidence), 4),
            confidence=self.confidence,
            **details,
        )
        return Measured(attempt, model, runner, logits)

    def judge(self, measured: Measured[Any], budget_pts: float) -> tuple[Measured[Any], bool]:
        """Whether the rule accepts `measured`, which comes back with the verdict (and, where
        val's bound fits, its flips) in its attempt."""
        attempt = measured.attempt
        paired = PairedDrop(self.n, attempt.worse or 0, attempt.better or 0)
        verdict = decide(paired, budget_pts, self.confidence)
        if verdict.accepted and self.validation.unlabelled is not None:
            images, reference = self.fp32_unlabelled
            flipped = predicted(run_float16(measured.runner, images)) != reference
            flips = Flips(len(images), int(flipped.sum()))
            verdict = decide(paired, budget_pts, self.confidence, flips)
            attempt = replace(
                attempt,
                unlabelled=flips.n,
                flips=flips.flips,
                flip_upper_pts=round(flips.upper_pts(self.confidence), 4),
            )
        attempt = replace(attempt, verdict=verdict.reason)
        return replace(measured, attempt=attempt), verdict.accepted

    @cached_property
    def fp32_unlabelled(self) -> tuple[np.ndarray, np.ndarray]:
        """The unlabelled images and FP32's answers on them: decoded and run once."""
        assert self.validation.unlabelled is not None
        images = self.validation.unlabelled()
        return images, predicted(run_float16(self.fp32_runner, images))


def run_float16(runner: Runner, images: np.ndarray, step: int = 64) -> np.ndarray:
    """Float32 outputs of images kept as float16 (half the memory), run in float32 chunks."""
    return np.concatenate(
        [
            run_all(runner, images[i : i + step].astype(np.float32)).astype(np.float32)
            for i in range(0, len(images), step)
        ]
    )
