"""The paired drop and its exact bounds (core/measures/evidence.py): what the guard reports
on val and bench states on test, checked against closed forms, SciPy's beta quantiles and
simulation."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.core.measures.evidence import (
    PairedDrop,
    binomial_lower,
    binomial_upper,
    paired_counts,
    promise_note,
    smallest_certifiable_pts,
)


def test_the_bound_is_exact_on_hand_computed_cases() -> None:
    # k = 0: P(X = 0) = (1 - p)^n = 1 - c, so p = 1 - (1 - c)^(1/n).
    for n, c in ((10, 0.9), (359, 0.9), (359, 0.95), (2000, 0.99)):
        assert binomial_upper(0, n, c) == pytest.approx(1 - (1 - c) ** (1 / n), rel=1e-9)
    # 359 val images, none worse: the smallest drop they certify at 0.9 (each side at 0.95).
    assert smallest_certifiable_pts(359, 0.9) == pytest.approx(100 * (1 - 0.05 ** (1 / 359)))
    assert smallest_certifiable_pts(359, 0.9) == pytest.approx(0.8310, abs=1e-4)


def test_the_bounds_are_clopper_pearsons() -> None:
    """Against the beta-quantile form of Clopper-Pearson (SciPy, here through scikit-learn)."""
    beta = pytest.importorskip("scipy.stats").beta
    for k, n, c in ((2, 359, 0.95), (11, 359, 0.9), (40, 2000, 0.975), (7, 20, 0.9)):
        assert binomial_upper(k, n, c) == pytest.approx(beta.ppf(c, k + 1, n - k), rel=1e-7)
        assert binomial_lower(k, n, c) == pytest.approx(beta.ppf(1 - c, k, n - k + 1), rel=1e-7)


def test_the_paired_drop_uses_only_discordant_images() -> None:
    reference = [True] * 90 + [False] * 10
    candidate = [True] * 86 + [False] * 4 + [True] * 2 + [False] * 8
    paired = paired_counts(reference, candidate)
    assert (paired.n, paired.worse, paired.better) == (100, 4, 2)
    assert paired.drop_pts == pytest.approx(2.0)
    assert paired.upper_pts(0.9) > paired.drop_pts > paired.interval_pts(0.9)[0]
    # A candidate that is right where the reference is (no discordant image) on many
    # images certifies a small drop; on few it cannot.
    assert PairedDrop(5000, 0, 0).upper_pts(0.9) < 0.1 < PairedDrop(359, 0, 0).upper_pts(0.9)
    with pytest.raises(ValueError, match="same images"):
        paired_counts([True], [True, False])


def test_the_bound_covers_the_true_drop_at_least_as_often_as_it_says() -> None:
    """Simulated splits of 359 images at the quickstart's test disagreement (3.6% worse,
    0.6% better): the 90% bound lies at or above the true 3-point drop in >= 90% of them."""
    rng = np.random.default_rng(0)
    draws = rng.multinomial(359, [0.036, 0.006, 0.958], 600)
    covered = [PairedDrop(359, int(w), int(b)).upper_pts(0.9) >= 3.0 for w, b, _ in draws]
    assert np.mean(covered) >= 0.9


def test_bench_says_when_test_contradicts_the_guards_bound() -> None:
    text, outside = promise_note(PairedDrop(359, 11, 0), 1.0, 0.5, 0.9)
    assert outside and "contradicts the guard's bound" in text
    assert "drop +3.06 pts (11 worse, 0 better" in text and "budget 1.00" in text
    text, outside = promise_note(PairedDrop(359, 11, 0), 1.0, 2.89, 0.9)
    assert not outside and "the guard's 90% bound on val 2.89" in text
