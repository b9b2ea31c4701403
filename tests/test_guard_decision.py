"""The guard's rule (core/measures/evidence.decide through the real Evaluator) on constructed
logits: a candidate is kept only when the bound on its drop fits the budget, and flips on unlabelled
images can refuse what val alone would keep."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from edgetl.core.errors import EdgetlError
from edgetl.core.measures.evidence import Flips, PairedDrop, decide
from edgetl.quantize.guard import check_certifiable
from edgetl.quantize.guard.evaluator import Evaluator, Validation
from edgetl.quantize.guard.ladder import Steps, climb
from edgetl.quantize.guard.report import Ranked, Ranking

CLASSES = 4


@dataclass
class Lookup:
    """A 'runner' whose images are row numbers into a table of logits (the 'model')."""

    logits: np.ndarray
    batch_size: int | None = None

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.logits[images[:, 0].astype(np.int64)]


def one_hot(answers: np.ndarray) -> np.ndarray:
    return np.eye(CLASSES, dtype=np.float32)[answers]


def evaluator(n: int, unlabelled: int = 0) -> tuple[Evaluator, np.ndarray]:
    """FP32 right on every one of `n` val images; `unlabelled` more rows after them."""
    labels = np.arange(n) % CLASSES
    fp32 = one_hot(np.concatenate([labels, np.arange(unlabelled) % CLASSES]))
    rows = np.arange(n + unlabelled, dtype=np.float32)[:, None]
    extra = (lambda: rows[n:].astype(np.float16)) if unlabelled else None
    validation = Validation(rows[:n], labels, unlabelled=extra)
    return Evaluator.for_fp32(validation, Lookup, fp32), fp32  # type: ignore[arg-type]


def candidate(fp32: np.ndarray, changed: range | list[int]) -> np.ndarray:
    """FP32's logits with the answers of the rows in `changed` moved to the next class."""
    answers = fp32.argmax(1)
    answers[list(changed)] = (answers[list(changed)] + 1) % CLASSES
    return one_hot(answers)


def test_a_point_estimate_within_budget_with_a_bound_above_it_is_refused() -> None:
    judge, fp32 = evaluator(359)
    measured = judge.measure("plain", candidate(fp32, [3, 40]))  # 2 of 359 worse: 0.56 pts
    assert measured.attempt.drop_pts == pytest.approx(100 * 2 / 359)
    judged, accepted = judge.judge(measured, 1.0)
    assert not accepted and judged.attempt.verdict == "bound 1.74 > budget"
    # Clopper-Pearson's upper bound on 2 of 359 at 0.95 (Bonferroni's half of 0.9): the
    # p with P(X <= 2) = 0.05, checked here by summing the binomial directly.
    p = judged.attempt.drop_upper_pts / 100
    tail = sum(math.comb(359, k) * p**k * (1 - p) ** (359 - k) for k in range(3))
    assert tail == pytest.approx(0.05, abs=1e-4)


def test_no_discordant_image_on_enough_images_is_accepted() -> None:
    judge, fp32 = evaluator(1000, unlabelled=1000)
    judged, accepted = judge.judge(judge.measure("plain", candidate(fp32, [])), 1.0)
    assert accepted and judged.attempt.verdict == "within budget"
    assert (judged.attempt.flips, judged.attempt.unlabelled) == (0, 1000)
    # 359 images with none worse certify 0.83 at 0.9: within a 1-point budget, not 0.5.
    small, fp32_small = evaluator(359)
    plain = small.measure("plain", candidate(fp32_small, []))
    assert small.judge(plain, 1.0)[1] and not small.judge(plain, 0.5)[1]


def test_flips_on_unlabelled_images_refuse_what_val_alone_accepts() -> None:
    judge, fp32 = evaluator(1000, unlabelled=1000)
    flipping = candidate(fp32, range(1000, 1030))  # val untouched; 30 of 1000 others flip
    measured = judge.measure("plain", flipping)
    assert (measured.attempt.worse, measured.attempt.better) == (0, 0)
    judged, accepted = judge.judge(measured, 1.0)
    assert not accepted and judged.attempt.flips == 30
    assert judged.attempt.verdict == f"flips bound {judged.attempt.flip_upper_pts:.2f} > budget"
    # Without unlabelled images val alone would have kept it.
    alone, fp32_alone = evaluator(1000)
    assert alone.judge(alone.measure("plain", candidate(fp32_alone, [])), 1.0)[1]


def test_flips_are_counted_only_once_val_bound_fits() -> None:
    """The unlabelled images cost one decode and one FP32 pass, and only for a candidate
    that val would keep."""
    decoded: list[int] = []
    judge, fp32 = evaluator(1000, unlabelled=100)
    assert judge.validation.unlabelled is not None
    inner = judge.validation.unlabelled
    judge.validation.__dict__["unlabelled"] = lambda: decoded.append(1) or inner()
    bad = judge.judge(judge.measure("plain", candidate(fp32, range(30))), 1.0)[0]
    assert bad.attempt.flips is None and decoded == []
    for _ in range(2):
        judge.judge(judge.measure("good", candidate(fp32, [])), 1.0)
    assert decoded == [1]


def test_the_ladder_climbs_past_a_lucky_point_estimate() -> None:
    """Plain INT8 loses 2 of 359 val images (0.56 pts, within 1.0 on the point estimate);
    the rule climbs to the float layer that changes none."""
    judge, fp32 = evaluator(359)
    models = {(): candidate(fp32, [5, 9]), ("conv0",): candidate(fp32, [])}
    steps = Steps(
        build=lambda layers: models[tuple(layers)],
        refit=None,
        rank=lambda: Ranking([Ranked("conv0", 1.0, 0.9)], 10, 0.9, 0.8, "top1"),
        max_float_layers=1,
    )
    outcome = climb(steps, judge, 1.0)
    assert [a.name for a in outcome.attempts] == ["plain", "1 float layer"]
    assert outcome.chosen is not None and outcome.chosen.attempt.float_layers == ["conv0"]


def test_the_flip_bound_is_exact_on_a_hand_computed_case() -> None:
    # No flip among n: (1 - p)^n = 1 - c.
    assert Flips(500, 0).upper_pts(0.9) == pytest.approx(100 * (1 - 0.1 ** (1 / 500)))
    # The paired bound of the refused quickstart rung (2 worse, 0 better on 359 at 0.9).
    assert not decide(PairedDrop(359, 2, 0), 1.0, 0.9).accepted


def test_a_val_split_too_small_to_certify_the_budget_is_refused_up_front() -> None:
    with pytest.raises(EdgetlError, match="val has 100 images: the smallest drop it can"):
        check_certifiable(100, 1.0, 0.9)
    check_certifiable(359, 1.0, 0.9)  # 0.83 certifiable
    check_certifiable(100, 3.0, 0.9)
    with pytest.raises(EdgetlError, match="--confidence 1.0"):
        check_certifiable(10_000, 1.0, 1.0)
