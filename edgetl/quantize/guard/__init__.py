"""The accuracy guard: quantize, measure, and restore accuracy until the budget holds.

In NNCF's shape (`quantize_with_accuracy_control(model, calibration, validation,
validation_fn, max_drop)`), with edgetl's steps, each measured on the run's validation images
with the target's runtime:
1. plain: the engine's INT8 model as it comes.
2. head refit (refit.py): the head re-trained on the quantized backbone's features (early-
   stopped on held-out training images: val only judges it); kept for the next steps only
   when its bound on the drop is lower than plain INT8's.
3. float layers (ranker.py): quantized layers ranked by how much keeping each alone in float
   brings the logits back towards FP32; the top 1, 2, 4, ... are kept float until a
   candidate is accepted or the recipe's max_float_layers is reached.
4. QAT (qat.py): plain INT8's activation ranges and head learned with fake quantization,
   written back into the same graph (no float layer); with `qat_first`, right after plain.
A candidate is accepted when the drop's upper bound at `confidence` fits the budget (with
`validation.unlabelled`, its flips against FP32 on those images too: core/measures/evidence.decide),
never on the point estimate alone. The decisions are ladder.py's; evaluator.py measures and judges;
report.py holds the records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import onnx

from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.evidence import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RULE,
    FLIPS_RULE,
    smallest_certifiable_pts,
)
from edgetl.core.measures.parity import compare
from edgetl.core.targets import Parity
from edgetl.core.ui import heartbeat, image_count
from edgetl.quantize import qdq
from edgetl.quantize.calibration import CalibrationSet
from edgetl.quantize.guard.candidates import Candidates, Rewrite
from edgetl.quantize.guard.evaluator import Evaluator, LoadOnnx, Validation
from edgetl.quantize.guard.ladder import Steps, climb
from edgetl.quantize.guard.ranker import rank_layers
from edgetl.quantize.guard.report import Attempt, GuardFailed, GuardReport, GuardResult
from edgetl.quantize.recipes import Recipe

__all__ = [
    "Attempt",
    "Evaluator",
    "GuardFailed",
    "GuardReport",
    "GuardResult",
    "Validation",
    "quantize_with_guard",
]

Refit = Callable[[onnx.ModelProto], onnx.ModelProto]


def quantize_with_guard(
    model: onnx.ModelProto,
    calibration: CalibrationSet,
    validation: Validation,
    validate_fn: LoadOnnx,
    max_drop: float,
    recipe: Recipe,
    *,
    rewrite: Rewrite = lambda m: m,
    rank_fn: LoadOnnx | None = None,
    refit: Callable[[Evaluator], Refit] | None = None,
    qat: Callable[[], Refit] | None = None,
    qat_first: bool = False,
    always_rank: bool = False,
    float16: bool = False,
    fp32_reference: tuple[Any, Parity] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> GuardResult[onnx.ModelProto]:
    """The INT8 model of `model` (a prepared FP32 graph) whose top-1 on `validation` is shown,
    at `confidence`, to be at most `max_drop` points below FP32's, measured on `validate_fn`
    (the target's runtime, or its host proxy); GuardFailed with the report when no candidate
    is; EdgetlError before any work when val has too few images to show it at all.

    Keyword options: `rewrite` is the target backend's own lossless QDQ rewrite; `rank_fn`
    runs the many layer-ranking candidates (default: `validate_fn`); `refit(evaluator)` makes
    the head refit (None: no refit); `qat()` makes quantization-aware fine-tuning (the last
    rung, or right after plain with `qat_first`; None: not tried); `always_rank`: the layers
    ranked for the report even where the ladder stopped first; `float16`: float layers tried
    in FP16 once accepted in FP32 (the target runs FP16 well); `fp32_reference` (logits,
    tolerance): what the FP32 model must match on `validation` before anything is quantized
    (CheckFailed otherwise).
    """
    check_certifiable(len(validation), max_drop, confidence)
    started = time.perf_counter()
    evaluator = _fp32(model, validation, validate_fn, confidence, fp32_reference)
    say(f"quantizing with {recipe.name} ({recipe.engine}, {recipe.method}) on "
        f"{len(calibration.files)} calibration images")  # fmt: skip
    with heartbeat("quantizing (activation statistics, then the INT8 graph)"):
        candidates = Candidates.quantize(model, calibration, recipe, rewrite)
    quantize_s = time.perf_counter() - started

    refits = _lazy(lambda: refit(evaluator)) if refit and recipe.guard.head_refit else None
    qats = _lazy(qat) if qat and (recipe.guard.qat or qat_first) else None
    steps = _steps(candidates, evaluator, rank_fn or validate_fn, recipe, refits, qats, qat_first)
    steps = replace(steps, fp16=_fp16(rewrite) if float16 else None)
    shown = lambda a: say(_attempt_line(a, evaluator, max_drop))  # noqa: E731
    outcome = climb(steps, evaluator, max_drop, shown, lambda text: say(f"  {text}"))
    ranked = outcome.ranking
    if ranked is None and always_rank:  # export --sensitivity: the report ranks every layer
        ranked = steps.rank()
    tried = (outcome.attempts, ranked, quantize_s, time.perf_counter() - started)
    rule = FLIPS_RULE if validation.unlabelled is not None else DEFAULT_RULE
    report = GuardReport(evaluator.fp32_top1, evaluator.n, max_drop, *tried, confidence, rule,
                         candidates.quantized_layers())  # fmt: skip
    if outcome.chosen is None:
        raise GuardFailed(report)
    chosen = outcome.chosen
    fp32 = (evaluator.fp32_runner, evaluator.fp32_logits)
    return GuardResult(chosen.model, chosen.runner, chosen.logits, report, *fp32)


def _fp16(rewrite: Rewrite) -> Callable[[onnx.ModelProto, list[str]], onnx.ModelProto]:
    return lambda model, layers: rewrite(qdq.to_float16(model, layers))


def _steps(
    candidates: Candidates,
    evaluator: Evaluator,
    rank_fn: LoadOnnx,
    recipe: Recipe,
    refit: Refit | None,
    qat: Refit | None,
    qat_first: bool,
) -> Steps[onnx.ModelProto]:
    ranking = (candidates.build, candidates.quantized_layers(), evaluator, rank_fn)
    return Steps(candidates.build, refit,
                 lambda: rank_layers(*ranking, recipe.guard.ranking_samples),
                 recipe.guard.max_float_layers, qat, qat_first)  # fmt: skip


def _fp32(
    model: onnx.ModelProto,
    validation: Validation,
    validate_fn: LoadOnnx,
    confidence: float,
    reference: tuple[Any, Parity] | None,
) -> Evaluator:
    """FP32 measured on val once (every candidate is judged against it), and checked
    against `reference` (PyTorch's logits) before anything is quantized."""
    with heartbeat(f"the FP32 model on {len(validation.labels)} val images"):
        evaluator = Evaluator.for_fp32(validation, validate_fn, model, confidence)
    if reference is not None:
        _check_fp32(evaluator, *reference)
    return evaluator


def check_certifiable(n: int, budget: float, confidence: float) -> None:
    """EdgetlError when `n` val images cannot show any drop within `budget` at `confidence`
    (not even with no image changed for the worse): the guard could only fail."""
    if not 0.5 <= confidence < 1:
        raise EdgetlError(f"--confidence {confidence}: give a confidence in [0.5, 1), e.g. 0.9")
    best = smallest_certifiable_pts(n, confidence)
    if best > budget:
        raise EdgetlError(
            f"val has {n} images: the smallest drop it can certify at {confidence:.0%} is "
            f"{best:.2f} pts, above --max-accuracy-drop {budget:.2f}, so no INT8 model could "
            "be accepted. Give the run more val images (finetune --val-fraction), a larger "
            "--max-accuracy-drop, or a lower --confidence"
        )


def _check_fp32(evaluator: Evaluator, reference: Any, tolerance: Parity) -> None:
    check = compare(reference, evaluator.fp32_logits, evaluator.validation.labels, tolerance)
    if not check.passed:
        raise CheckFailed(
            "the FP32 ONNX model differs from PyTorch before quantization: "
            f"{check.shortfall()}; no artifact written"
        )


def _lazy(make: Callable[[], Refit]) -> Refit:
    """The head refit (and QAT) is made on first use: it decodes up to 2,000 training images,
    which a model that passes as plain INT8 never needs."""
    made: list[Refit] = []

    def apply(model: onnx.ModelProto) -> onnx.ModelProto:
        if not made:
            made.append(make())
        return made[0](model)

    return apply


def _attempt_line(attempt: Attempt, evaluator: Evaluator, budget: float) -> str:
    flips = ""
    if attempt.flips is not None:
        flips = (
            f"; {attempt.flips} of {attempt.unlabelled} unlabelled train images flipped: "
            f"at most {attempt.flip_upper_pts:.2f}"
        )
    return (
        f"  {attempt.name}: INT8 top-1 {attempt.top1:.2%} (FP32 {evaluator.fp32_top1:.2%}, "
        f"drop {attempt.drop_pts:+.2f} pts = {image_count(attempt.drop_pts, evaluator.n)} "
        f"val images; {attempt.worse} worse, {attempt.better} better: at "
        f"{evaluator.confidence:.0%} confidence at most {attempt.drop_upper_pts:.2f}{flips}; "
        f"budget {budget:.2f}: {attempt.verdict})"
    )
