"""The guard's decisions, apart from what measures or builds a model (so they are tested with
a fake evaluator): plain INT8, then the head refit, then 1, 2, 4, ... float layers, then
quantization-aware fine-tuning of plain INT8 (qat.py; right after plain with export --qat), each
with FP32's head and, where the refit helped, then with the re-fitted head: a re-fitted head
answers differently from FP32 on borderline images whatever the backbone does, so it can
widen the bound it was meant to narrow (digits on OpenVINO: a refit whose bound was 4.64
against plain's 4.78 left every float-layer step at 2.43-3.97, over a 2-point budget that 2
float layers with FP32's head met).

Every step is measured on the validation images and judged by the evaluator's rule (a bound
on the drop, not its point estimate: climbing until a noisy estimate dips under the line
selects for val's noise); the first the rule accepts is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from edgetl.quantize.guard.report import Attempt, Measured, Ranking

M = TypeVar("M")


class Measures(Protocol):
    def measure(self, name: str, model: Any, **details: Any) -> Measured[Any]: ...

    def judge(self, measured: Measured[Any], budget_pts: float) -> tuple[Measured[Any], bool]: ...


@dataclass(frozen=True)
class Steps(Generic[M]):
    """How to make each candidate: `build(float_layers)` the INT8 model with those layers
    kept float; `refit(model)` the same with its head re-fitted (None: the recipe skips it);
    `rank()` the quantized layers by sensitivity, most sensitive first; `qat(model)` the
    same with quantization-aware fine-tuning (None: not tried), the last rung, or right after
    plain INT8 when `qat_first` (export --qat: no float layer wanted)."""

    build: Callable[[list[str]], M]
    refit: Callable[[M], M] | None
    rank: Callable[[], Ranking]
    max_float_layers: int
    qat: Callable[[M], M] | None = None
    qat_first: bool = False
    # `fp16(model, layers)`: the model with those float layers in FP16, where the target runs
    # FP16 well (None: they stay FP32); kept when the guard accepts it too.
    fp16: Callable[[M, list[str]], M] | None = None


@dataclass(frozen=True)
class LadderOutcome(Generic[M]):
    chosen: Measured[M] | None  # None: no step met the budget
    attempts: list[Attempt]
    ranking: Ranking | None

    @property
    def passed(self) -> bool:
        return self.chosen is not None


def climb(
    steps: Steps[M],
    evaluator: Measures,
    budget_pts: float,
    on_attempt: Callable[[Attempt], None] = lambda _: None,
    note: Callable[[str], None] = lambda _: None,
) -> LadderOutcome[M]:
    """Measure candidates in order until the evaluator accepts one within `budget_pts`;
    `on_attempt` sees each attempt as it is judged, `note` what was decided between them."""
    attempts: list[Attempt] = []
    ranked: list[Ranking] = []

    def accepted(measured: Measured[M]) -> Measured[M] | None:
        judged, ok = evaluator.judge(measured, budget_pts)
        attempts.append(judged.attempt)
        on_attempt(judged.attempt)
        return judged if ok else None

    def outcome(chosen: Measured[M] | None) -> LadderOutcome[M]:
        return LadderOutcome(chosen, attempts, ranked[0] if ranked else None)

    def qat() -> Measured[M] | None:
        assert steps.qat is not None
        return accepted(evaluator.measure("QAT", steps.qat(plain.model), qat=True))

    plain = evaluator.measure("plain", steps.build([]))
    if chosen := accepted(plain):
        return outcome(chosen)
    if steps.qat is not None and steps.qat_first and (chosen := qat()):
        return outcome(chosen)
    chosen = _float_rungs(steps, evaluator, plain, accepted, note, ranked)
    if chosen is not None and steps.fp16 is not None and chosen.attempt.float_layers:
        chosen = _in_float16(steps.fp16, evaluator, chosen, accepted, attempts)
    if chosen is None and steps.qat is not None and not steps.qat_first:
        chosen = qat()
    return outcome(chosen)


def _float_rungs(
    steps: Steps[M],
    evaluator: Measures,
    plain: Measured[M],
    accepted: Callable[[Measured[M]], Measured[M] | None],
    note: Callable[[str], None],
    ranked: list[Ranking],
) -> Measured[M] | None:
    """The head refit, then 1, 2, 4, ... float layers (the rank appended to `ranked`)."""
    refit = steps.refit
    if refit is not None:
        refitted = evaluator.measure("head refit", refit(plain.model), head_refit=True)
        if chosen := accepted(refitted):
            return chosen
        if not _less_evidence_of_loss(refitted.attempt, plain.attempt):
            note("head refit did not help; not kept")
            refit = None  # the float-layer steps go without it
    if steps.max_float_layers < 1:
        return None
    ranked.append(steps.rank())
    for count in float_layer_counts(steps.max_float_layers):
        layers = ranked[0].names(count)
        model = steps.build(layers)
        label = f"{len(layers)} float layer{'s' if len(layers) > 1 else ''}"
        measured = evaluator.measure(label, model, float_layers=layers)
        if chosen := accepted(measured):
            return chosen
        if refit is not None:  # FP32's head first: a re-fitted one disagrees with it more
            refitted = evaluator.measure(
                f"{label} + head refit", refit(model), float_layers=layers, head_refit=True
            )
            if chosen := accepted(refitted):
                return chosen
    return None


def _in_float16(
    fp16: Callable[[M, list[str]], M],
    evaluator: Measures,
    chosen: Measured[M],
    accepted: Callable[[Measured[M]], Measured[M] | None],
    attempts: list[Attempt],
) -> Measured[M]:
    """The accepted candidate with its float layers in FP16, kept when the guard accepts it
    too; otherwise the FP32 one stays (listed last again: the kept attempt ends the list)."""
    layers = list(chosen.attempt.float_layers)
    half = evaluator.measure(f"{chosen.attempt.name} in FP16", fp16(chosen.model, layers),
                             float_layers=layers, head_refit=chosen.attempt.head_refit,
                             float16=True)  # fmt: skip
    if found := accepted(half):
        return found
    attempts[-2], attempts[-1] = attempts[-1], attempts[-2]
    return chosen


def _less_evidence_of_loss(refitted: Attempt, plain: Attempt) -> bool:
    """Whether the refit helped by the measure the rule decides on: a lower bound on the drop
    (its top-1 where no bound was measured)."""
    if refitted.drop_upper_pts is not None and plain.drop_upper_pts is not None:
        return refitted.drop_upper_pts < plain.drop_upper_pts
    return refitted.top1 > plain.top1


def float_layer_counts(limit: int) -> list[int]:
    """1, 2, 4, ... up to `limit`, which is always last: [1, 2, 4, 6] for 6."""
    counts, count = [], 1
    while count < limit:
        counts.append(count)
        count *= 2
    return [*counts, limit] if limit > 0 else []
