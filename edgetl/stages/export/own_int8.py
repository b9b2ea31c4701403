"""INT8 made by the target's own quantizer (ExecuTorch's PT2E XNNPACK quantizer), held to
the guard's rule: the compiled artifact on val against FP32 PyTorch, accepted only when the
drop's upper bound at the guard's confidence fits the budget (core/measures/evidence.py).

It is the guard's first rung only: PT2E has no Q/DQ ONNX graph for the ladder's later rungs
(head refit, float layers, QAT) to work on; an artifact that fails is refused, nothing
written, and the report says what to do."""

from __future__ import annotations

import numpy as np

from edgetl.core.errors import CheckFailed
from edgetl.core.events import say
from edgetl.core.measures.evidence import decide
from edgetl.core.measures.metrics import agreement, drop_pts, paired_drop, top1
from edgetl.core.records import Attempt, QuantizationRecord
from edgetl.stages.export.inputs import Inputs
from edgetl.stages.export.plan import Plan, guard_terms

RULE = "paired-bound"


def judged(plan: Plan, inputs: Inputs, logits: np.ndarray, compile_s: float) -> QuantizationRecord:
    """The artifact's val logits judged against FP32's; its record, or CheckFailed."""
    assert plan.recipe is not None and inputs.calibration is not None
    budget, confidence = guard_terms(plan.opts)
    labels, fp32 = inputs.val_labels, inputs.val_torch
    paired = paired_drop(fp32, logits, labels)
    verdict = decide(paired, budget, confidence)
    bound = paired.upper_pts(confidence)
    int8_top1, fp32_top1 = top1(logits, labels), top1(fp32, labels)
    say(
        f"{plan.recipe.name}: val top-1 {int8_top1:.2%} vs FP32 {fp32_top1:.2%} on {paired.n} "
        f"images ({paired.worse} worse, {paired.better} better); at {confidence:.0%} the drop "
        f"is at most {bound:.2f} pts (budget {budget:g}): "
        + ("accepted" if verdict.accepted else "refused")
    )
    if not verdict.accepted:
        raise CheckFailed(
            f"{plan.profile.name} INT8 ({plan.recipe.name}) is not shown to lose at most "
            f"{budget:g} pts of val top-1 ({verdict.reason}); this target's quantizer has no "
            "float-layer ladder: export fp32, raise --max-accuracy-drop, or give val more "
            "images. No artifact written"
        )
    attempt = Attempt(
        name=f"{plan.recipe.name} (plain)",
        top1=int8_top1,
        drop_pts=round(drop_pts(fp32_top1, int8_top1), 4),
        agreement=agreement(logits, fp32),
        max_abs_diff=float(np.abs(logits - fp32).max()),
        worse=paired.worse,
        better=paired.better,
        drop_upper_pts=round(bound, 4),
        confidence=confidence,
        verdict=f"accepted: {verdict.reason}",
    )
    return QuantizationRecord(
        recipe=plan.recipe,
        calibration={**inputs.calibration.describe(), "time_s": round(compile_s, 2)},
        fp32_top1=fp32_top1,
        int8_top1=int8_top1,
        drop_pts=attempt.drop_pts,
        budget_pts=budget,
        n=paired.n,
        agreement=attempt.agreement,
        max_abs_diff=attempt.max_abs_diff,
        float_layers=[],
        head_refit=False,
        attempts=[attempt],
        sensitivities=[],
        quantize_s=round(compile_s, 2),
        guard_s=0.0,
        speed_here={},
        artifact_top1=int8_top1,
        rule=RULE,
        confidence=confidence,
        drop_upper_pts=attempt.drop_upper_pts,
    )
