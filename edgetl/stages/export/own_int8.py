"""INT8 made by the target's own quantizer (ExecuTorch's PT2E XNNPACK quantizer), held to
the guard's rule: the compiled artifact on val against FP32 PyTorch, accepted only when the
drop's upper bound at the guard's confidence fits the budget (core/measures/evidence.py).

Its ladder (`climb`): plain, then the first 1, 2, 4, ... convolutions left float (at most
the recipe's `max_float_layers`), each compiled, run on val and judged, the first accepted
kept. On scenes, PT2E's plain INT8 lost 21.7 pts of val top-1 and keeping the stem conv
float alone brought back 13.8 of them: the first convolution, reading the image, is where
XNNPACK's per-tensor INT8 hurts most. PT2E has no Q/DQ ONNX graph for the ONNX guard's
other rungs (head refit, ranked float layers, QAT). An artifact no rung makes acceptable is
refused, nothing written, and the report says what to do."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from edgetl.core.errors import CheckFailed
from edgetl.core.events import say
from edgetl.core.measures.evidence import DEFAULT_RULE, decide
from edgetl.core.measures.metrics import agreement, drop_pts, paired_drop, top1
from edgetl.core.records import Attempt, QuantizationRecord
from edgetl.core.records.recipe import Recipe
from edgetl.stages.export.inputs import Inputs
from edgetl.stages.export.plan import Plan, guard_terms

Rung = tuple[str, tuple[str, ...]]  # its name, the module-name patterns left float


def rungs(model: Any, recipe: Recipe) -> list[Rung]:
    """Plain (the recipe's own float modules), then the first 1, 2, 4, ... convolutions in
    the model's order (with the BatchNorm right after each) left float too."""
    import torch

    modules = list(model.named_modules())
    found = []
    for (name, module), (after, follower) in zip(modules, [*modules[1:], ("", None)],
                                                 strict=True):  # fmt: skip
        if isinstance(module, torch.nn.Conv2d):
            bn = isinstance(follower, torch.nn.BatchNorm2d)
            found.append((name, after if bn else None))
    ladder: list[Rung] = [("plain", recipe.float_layers)]
    count = 1
    while count <= min(recipe.guard.max_float_layers, len(found)):
        kept = [f"^{re.escape(n)}$" for pair in found[:count] for n in pair if n]
        ladder.append((f"first {count} conv(s) float", (*recipe.float_layers, *kept)))
        count *= 2
    return ladder


def climb(plan: Plan, inputs: Inputs, rung_logits: Callable[[Rung], np.ndarray]
          ) -> list[Attempt]:  # fmt: skip
    """Each rung compiled and run on val (`rung_logits`), judged, until one is accepted:
    the attempts, the last of them the artifact written (accepted, or the last refused)."""
    attempts = []
    for rung in rungs(inputs.model, _recipe(plan)):
        attempts.append(_attempt(plan, inputs, rung_logits(rung), rung))
        if attempts[-1].verdict and attempts[-1].verdict.startswith("accepted"):
            break
    return attempts


def _recipe(plan: Plan) -> Recipe:
    assert plan.recipe is not None
    return plan.recipe


def _attempt(plan: Plan, inputs: Inputs, logits: np.ndarray, rung: Rung) -> Attempt:
    budget, confidence = guard_terms(plan.opts)
    labels, fp32 = inputs.val_labels, inputs.val_torch
    paired = paired_drop(fp32, logits, labels)
    verdict = decide(paired, budget, confidence)
    bound = paired.upper_pts(confidence)
    int8_top1, fp32_top1 = top1(logits, labels), top1(fp32, labels)
    say(
        f"{_recipe(plan).name}, {rung[0]}: val top-1 {int8_top1:.2%} vs FP32 {fp32_top1:.2%} "
        f"on {paired.n} images ({paired.worse} worse, {paired.better} better); at "
        f"{confidence:.0%} the drop is at most {bound:.2f} pts (budget {budget:g}): "
        + ("accepted" if verdict.accepted else "refused")
    )
    return Attempt(
        name=f"{_recipe(plan).name} ({rung[0]})",
        top1=int8_top1,
        drop_pts=round(drop_pts(fp32_top1, int8_top1), 4),
        agreement=agreement(logits, fp32),
        max_abs_diff=float(np.abs(logits - fp32).max()),
        float_layers=list(rung[1]),
        worse=paired.worse,
        better=paired.better,
        drop_upper_pts=round(bound, 4),
        confidence=confidence,
        verdict=("accepted: " if verdict.accepted else "refused: ") + verdict.reason,
    )


def judged(plan: Plan, inputs: Inputs, attempts: list[Attempt], compile_s: float
           ) -> QuantizationRecord:  # fmt: skip
    """The climb's record, its last attempt the artifact; CheckFailed when none passed."""
    assert inputs.calibration is not None
    budget, confidence = guard_terms(plan.opts)
    attempt = attempts[-1]
    if not (attempt.verdict or "").startswith("accepted"):
        raise CheckFailed(
            f"{plan.profile.name} INT8 ({_recipe(plan).name}) is not shown to lose at most "
            f"{budget:g} pts of val top-1 by any of {len(attempts)} candidates (the last: "
            f"{attempt.verdict}): export fp32, raise --max-accuracy-drop, or give val more "
            "images. No artifact written"
        )
    fp32_top1 = top1(inputs.val_torch, inputs.val_labels)
    int8_top1 = attempt.top1
    return QuantizationRecord(
        recipe=_recipe(plan),
        calibration={**inputs.calibration.describe(), "time_s": round(compile_s, 2)},
        fp32_top1=fp32_top1,
        int8_top1=int8_top1,
        drop_pts=attempt.drop_pts,
        budget_pts=budget,
        n=len(inputs.val_labels),
        agreement=attempt.agreement,
        max_abs_diff=attempt.max_abs_diff,
        float_layers=attempt.float_layers,
        head_refit=False,
        attempts=attempts,
        sensitivities=[],
        quantize_s=round(compile_s, 2),
        guard_s=0.0,
        speed_here={},
        artifact_top1=int8_top1,
        rule=DEFAULT_RULE,
        confidence=confidence,
        drop_upper_pts=attempt.drop_upper_pts,
    )
