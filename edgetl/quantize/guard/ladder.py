"""The guard's decisions, apart from what measures or builds a model (so they are tested with
a fake evaluator): plain INT8, then the head refit, then 1, 2, 4, ... float layers.

Every step is measured on the validation images; the first within budget is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from edgetl.core.metrics import within_budget
from edgetl.quantize.guard.report import Attempt, Measured

M = TypeVar("M")


class Measures(Protocol):
    def measure(self, name: str, model: Any, **details: Any) -> Measured[Any]: ...


@dataclass(frozen=True)
class Steps(Generic[M]):
    """How to make each candidate: `build(float_layers)` the INT8 model with those layers
    kept float; `refit(model)` the same with its head re-fitted (None: the recipe skips it);
    `rank()` the quantized layers by sensitivity, most sensitive first."""

    build: Callable[[list[str]], M]
    refit: Callable[[M], M] | None
    rank: Callable[[], list[tuple[str, float]]]
    max_float_layers: int


@dataclass(frozen=True)
class LadderOutcome(Generic[M]):
    chosen: Measured[M] | None  # None: no step met the budget
    attempts: list[Attempt]
    sensitivities: list[tuple[str, float]]

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
    """Measure candidates in order until one is within `budget_pts`; `on_attempt` sees each
    attempt as it is measured, `note` what was decided between them."""
    attempts: list[Attempt] = []
    sensitivities: list[tuple[str, float]] = []

    def within(measured: Measured[M]) -> bool:
        attempts.append(measured.attempt)
        on_attempt(measured.attempt)
        return within_budget(measured.attempt.drop_pts, budget_pts)

    def outcome(chosen: Measured[M] | None) -> LadderOutcome[M]:
        return LadderOutcome(chosen, attempts, sensitivities)

    plain = evaluator.measure("plain", steps.build([]))
    if within(plain):
        return outcome(plain)
    refit = steps.refit
    if refit is not None:
        refitted = evaluator.measure("head refit", refit(plain.model), head_refit=True)
        if within(refitted):
            return outcome(refitted)
        if refitted.attempt.top1 <= plain.attempt.top1:
            note("head refit did not help; not kept")
            refit = None  # the float-layer steps go without it
    if steps.max_float_layers < 1:
        return outcome(None)
    sensitivities = steps.rank()
    for count in float_layer_counts(steps.max_float_layers):
        layers = [name for name, _ in sensitivities[:count]]
        model = steps.build(layers)
        label = f"{len(layers)} float layer{'s' if len(layers) > 1 else ''}"
        if refit is not None:
            model, label = refit(model), f"{label} + head refit"
        measured = evaluator.measure(
            label, model, float_layers=layers, head_refit=refit is not None
        )
        if within(measured):
            return outcome(measured)
    return outcome(None)


def float_layer_counts(limit: int) -> list[int]:
    """1, 2, 4, ... up to `limit`, which is always last: [1, 2, 4, 6] for 6."""
    counts, count = [], 1
    while count < limit:
        counts.append(count)
        count *= 2
    return [*counts, limit] if limit > 0 else []
