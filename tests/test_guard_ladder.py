"""The guard's decisions (quantize/guard/ladder.py) with a fake evaluator: no model is built
or run, so every branch of the ladder is checked in milliseconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from edgetl.core.measures.metrics import within_budget
from edgetl.quantize.guard.ladder import Steps, climb, float_layer_counts
from edgetl.quantize.guard.report import Attempt, Measured, Ranked, Ranking

LAYERS = [f"conv{i}" for i in range(10)]


@dataclass(frozen=True)
class Fake:
    """A 'model': which layers are float and whether its head was re-fitted."""

    float_layers: tuple[str, ...] = ()
    refit: bool = False
    qat: bool = False


@dataclass
class FakeEvaluator:
    """Top-1 drop of each fake model from a rule; records what it was asked to measure."""

    drop: Any  # Fake -> drop in points
    fp32_top1: float = 0.9
    measured: list[str] = field(default_factory=list)

    def measure(self, name: str, model: Fake, **details: Any) -> Measured[Fake]:
        self.measured.append(name)
        drop = self.drop(model)
        attempt = Attempt(name, self.fp32_top1 - drop / 100, drop, 0.99, 0.1, **details)
        return Measured(attempt, model, runner=None, logits=np.zeros((1, 2)))  # type: ignore[arg-type]

    def judge(self, measured: Measured[Fake], budget: float) -> tuple[Measured[Fake], bool]:
        """The point estimate within budget: these tests are about the ladder's order (the
        rule itself is test_guard_decision.py's)."""
        return measured, within_budget(measured.attempt.drop_pts, budget)


@dataclass
class Calls:
    refits: int = 0
    ranks: int = 0


def steps(calls: Calls, max_float_layers: int = 6, refit: bool = True) -> Steps[Fake]:
    def do_refit(model: Fake) -> Fake:
        calls.refits += 1
        return Fake(model.float_layers, refit=True)

    def rank() -> Ranking:
        calls.ranks += 1
        layers = [Ranked(name, 1.0 / (i + 1), 0.5) for i, name in enumerate(LAYERS)]
        return Ranking(layers, 10, 0.9, 0.4, "top1")

    return Steps(
        build=lambda layers: Fake(tuple(layers)),
        refit=do_refit if refit else None,
        rank=rank,
        max_float_layers=max_float_layers,
    )


def test_plain_within_budget_is_chosen_and_nothing_else_runs() -> None:
    calls = Calls()
    evaluator = FakeEvaluator(lambda m: 0.5)
    outcome = climb(steps(calls), evaluator, 1.0)
    assert outcome.passed and outcome.chosen is not None
    assert outcome.chosen.attempt.name == "plain" and outcome.chosen.model == Fake()
    assert evaluator.measured == ["plain"] and (calls.refits, calls.ranks) == (0, 0)


def test_the_head_refit_is_chosen_when_it_closes_the_gap() -> None:
    calls = Calls()
    evaluator = FakeEvaluator(lambda m: 0.8 if m.refit else 2.0)
    outcome = climb(steps(calls), evaluator, 1.0)
    assert outcome.chosen is not None and outcome.chosen.model == Fake(refit=True)
    assert outcome.chosen.attempt.head_refit
    assert evaluator.measured == ["plain", "head refit"] and calls.ranks == 0


def test_a_refit_that_does_not_help_is_dropped_from_the_float_layer_steps() -> None:
    calls, notes = Calls(), []
    # Refit makes it worse; 4 float layers are enough.
    evaluator = FakeEvaluator(lambda m: 3.0 if m.refit else 2.0 - 0.4 * len(m.float_layers))
    outcome = climb(steps(calls), evaluator, 1.0, note=notes.append)
    assert evaluator.measured == ["plain", "head refit", "1 float layer", "2 float layers",
                                  "4 float layers"]  # fmt: skip
    assert outcome.chosen is not None
    assert outcome.chosen.model == Fake(tuple(LAYERS[:4]))  # the most sensitive first
    assert outcome.chosen.attempt.float_layers == LAYERS[:4]
    assert notes == ["head refit did not help; not kept"] and calls.refits == 1


def test_a_refit_that_helps_is_kept_with_the_float_layers() -> None:
    calls = Calls()
    evaluator = FakeEvaluator(lambda m: (1.5 if m.refit else 2.5) - 0.6 * len(m.float_layers))
    outcome = climb(steps(calls), evaluator, 1.0)
    assert evaluator.measured[-1] == "1 float layer + head refit"
    assert outcome.chosen is not None and outcome.chosen.model == Fake((LAYERS[0],), refit=True)
    assert outcome.chosen.attempt.head_refit and calls.refits == 2


def test_nothing_within_budget_fails_after_the_last_step() -> None:
    calls = Calls()
    evaluator = FakeEvaluator(lambda m: 5.0)
    outcome = climb(steps(calls, max_float_layers=6, refit=False), evaluator, 1.0)
    assert not outcome.passed and outcome.chosen is None
    assert [a.name for a in outcome.attempts] == [
        "plain", "1 float layer", "2 float layers", "4 float layers", "6 float layers"
    ]  # fmt: skip
    assert outcome.ranking is not None and calls.ranks == 1
    assert (outcome.ranking.layers[0].layer, outcome.ranking.layers[0].score) == ("conv0", 1.0)


def test_no_float_layers_allowed_means_no_ranking() -> None:
    calls = Calls()
    outcome = climb(steps(calls, max_float_layers=0), FakeEvaluator(lambda m: 5.0), 1.0)
    assert outcome.chosen is None and calls.ranks == 0
    assert [a.name for a in outcome.attempts] == ["plain", "head refit"]


def test_a_drop_equal_to_the_budget_passes_despite_rounding() -> None:
    drop = 100 * (0.9 - 0.89)  # 1.0000000000000009 in floating point
    outcome = climb(steps(Calls()), FakeEvaluator(lambda m: drop), 1.0)
    assert outcome.chosen is not None and outcome.chosen.attempt.name == "plain"


def test_every_attempt_is_shown_as_it_is_measured() -> None:
    seen: list[str] = []
    climb(
        steps(Calls()), FakeEvaluator(lambda m: 5.0), 1.0, on_attempt=lambda a: seen.append(a.name)
    )
    assert seen[:2] == ["plain", "head refit"] and len(seen) == 2 + len(float_layer_counts(6))


@pytest.mark.parametrize(
    ("limit", "counts"), [(0, []), (1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8])]
)
def test_float_layer_counts_double_up_to_the_limit(limit: int, counts: list[int]) -> None:
    assert float_layer_counts(limit) == counts


def test_a_refit_is_kept_only_when_its_bound_is_lower() -> None:
    """The refit is judged by what the rule decides on: a refit that gains top-1 on val
    but disagrees with FP32 on more images (a wider bound) does not go on with the float
    layers."""
    from dataclasses import replace

    class Bounded(FakeEvaluator):
        def measure(self, name: str, model: Fake, **details: Any) -> Measured[Fake]:
            measured = super().measure(name, model, **details)
            bound = measured.attempt.drop_pts + (3.0 if model.refit else 0.5)
            return replace(measured, attempt=replace(measured.attempt, drop_upper_pts=bound))

    calls, notes = Calls(), []
    evaluator = Bounded(lambda m: (1.5 if m.refit else 2.0) - 0.4 * len(m.float_layers))
    climb(steps(calls), evaluator, 1.0, note=notes.append)
    assert notes == ["head refit did not help; not kept"] and calls.refits == 1
    assert evaluator.measured[2] == "1 float layer"


def _with_qat(calls: Calls, first: bool) -> Steps[Fake]:
    from dataclasses import replace

    def qat(model: Fake) -> Fake:
        assert model == Fake()  # QAT starts from plain INT8: no float layer, FP32's head
        return Fake(qat=True)

    return replace(steps(calls), qat=qat, qat_first=first)


def test_qat_is_the_last_rung_and_first_after_plain_on_request() -> None:
    """Where only QAT meets the budget it is reached after every float-layer step; with
    export --qat (qat_first) it is measured right after plain and nothing else runs."""
    calls = Calls()
    evaluator = FakeEvaluator(lambda m: 0.2 if m.qat else 5.0)
    outcome = climb(_with_qat(calls, first=False), evaluator, 1.0)
    assert outcome.chosen is not None and outcome.chosen.model == Fake(qat=True)
    assert evaluator.measured[0] == "plain" and evaluator.measured[-1] == "QAT"
    assert "6 float layers" in evaluator.measured and outcome.chosen.attempt.qat
    first = Calls()
    evaluator = FakeEvaluator(lambda m: 0.2 if m.qat else 5.0)
    outcome = climb(_with_qat(first, first=True), evaluator, 1.0)
    assert evaluator.measured == ["plain", "QAT"] and (first.refits, first.ranks) == (0, 0)
    refused = FakeEvaluator(lambda m: 5.0)
    assert not climb(_with_qat(Calls(), first=True), refused, 1.0).passed
    assert refused.measured[:2] == ["plain", "QAT"] and "6 float layers" in refused.measured
