"""A paired difference of a per-image outcome (right or wrong) between a reference model and
a candidate answering the same images, with exact bounds: how much evidence a top-1 drop
measured on n images carries. Metric-free: any per-image pass/fail (top-1 now; a detection
metric's per-image share later) gives the two discordant counts it needs. NumPy-free, so
the device side (bench) states the same numbers the host's guard does.

Only the discordant images inform the drop: `worse` (the reference right, the candidate
wrong) and `better` (the other way round); drop = (worse - better) / n. Its one-sided upper
bound at confidence c is exact and conservative: Clopper-Pearson's upper bound on the
`worse` rate minus its lower bound on the `better` rate, each at 1 - (1 - c) / 2
(Bonferroni). Chosen by simulation (`python tools/bound_coverage.py`, 4,000 draws per
case, 359 and 2,000 images, true drops 0-3 points): at 0.9 it covered the true drop in
98-100% of draws in every case; the exact test conditional on the discordant count
(McNemar's) covered only 42-77% where few images disagree, a paired bootstrap 42-89%: both
ignore how many images disagree at all, which is most of a small split's uncertainty. The
price is width: on 359 images a true 0.5-point drop gets a 1.6-point bound on average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_CONFIDENCE = 0.9  # of every bound edgetl states unless told otherwise
# Points of top-1 a model may lose (INT8 against FP32 at export; a candidate against its
# base or baseline in bench and compare) unless told otherwise.
DEFAULT_BUDGET_PTS = 1.0
# Drops are differences of image counts divided by n: 9/900 - 0 must equal a 1.00 budget.
BUDGET_TOLERANCE = 1e-6


def _cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (n up to ~1e6)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [
        base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def binomial_upper(k: int, n: int, confidence: float) -> float:
    """Clopper-Pearson's exact one-sided upper bound on p after k successes in n trials: the
    p at which seeing k or fewer has probability 1 - confidence."""
    if n <= 0 or k >= n:
        return 1.0
    low, high = k / n, 1.0
    for _ in range(80):
        middle = (low + high) / 2
        if _cdf(k, n, middle) > 1 - confidence:
            low = middle
        else:
            high = middle
    return high


def binomial_lower(k: int, n: int, confidence: float) -> float:
    """Clopper-Pearson's exact one-sided lower bound on p after k successes in n trials."""
    if k <= 0 or n <= 0:
        return 0.0
    return 1.0 - binomial_upper(n - k, n, confidence)


@dataclass(frozen=True)
class PairedDrop:
    """How much worse a candidate is than its reference on the same n images, in points."""

    n: int
    worse: int  # the reference right, the candidate wrong
    better: int  # the reference wrong, the candidate right

    @property
    def drop_pts(self) -> float:
        return 100.0 * (self.worse - self.better) / self.n if self.n else 0.0

    def upper_pts(self, confidence: float) -> float:
        """One-sided upper bound on the true drop at `confidence` (exact, conservative)."""
        if not self.n:
            return math.inf
        each = 1 - (1 - confidence) / 2
        worse = binomial_upper(self.worse, self.n, each)
        better = binomial_lower(self.better, self.n, each)
        return 100.0 * (worse - better)

    def interval_pts(self, confidence: float) -> tuple[float, float]:
        """Two-sided interval on the true drop at `confidence` (each side at its half)."""
        side = 1 - (1 - confidence) / 2
        lower = -PairedDrop(self.n, self.better, self.worse).upper_pts(side)
        return lower, self.upper_pts(side)


def smallest_certifiable_pts(n: int, confidence: float) -> float:
    """The smallest drop n images can certify at `confidence`: the bound when not one image
    changed for the worse ("val has 359 images: the smallest drop it can certify at 0.9 is
    N points")."""
    return PairedDrop(n, 0, 0).upper_pts(confidence)


def paired_counts(reference_right: list[bool], candidate_right: list[bool]) -> PairedDrop:
    """The discordant counts of two per-image outcomes on the same images."""
    if len(reference_right) != len(candidate_right):
        raise ValueError("paired outcomes need the same images")
    pairs = [(bool(r), bool(c)) for r, c in zip(reference_right, candidate_right, strict=True)]
    worse = sum(1 for r, c in pairs if r and not c)
    better = sum(1 for r, c in pairs if c and not r)
    return PairedDrop(len(pairs), worse, better)


@dataclass(frozen=True)
class Flips:
    """How often a candidate's answer differs from its reference's on n images nobody needs to
    have labelled. An image can only turn wrong by changing its answer, so the flip rate
    bounds the drop from above, on images like these."""

    n: int
    flips: int

    def upper_pts(self, confidence: float) -> float:
        """One-sided upper bound on the flip rate (so on the drop) at `confidence`."""
        return 100.0 * binomial_upper(self.flips, self.n, confidence) if self.n else math.inf


# The rules an INT8 decision can be made by (`export --rule`), recorded in the manifest.
# The default, by measurement (`python tools/guard_rules.py`, 5 seeds x digits, photos and
# scenes; docs/guard.md): the point estimate within budget (edgetl before) kept a model whose
# test drop exceeded the budget in 4 of 15 runs (digits 3 of 5, worst +3.06); the bound kept
# 10, none over (worst +0.79), and refused digits' 5. Adding the flips refused one good
# model (test +0.26), caught no bad one and cost 1.44x the guard's time on photos.
DEFAULT_RULE = "paired-bound"
FLIPS_RULE = "paired-bound+flips"
RULES = {
    DEFAULT_RULE: "val's exact upper bound on the drop within the budget",
    FLIPS_RULE: "that, and the upper bound of the flip rate against FP32 on unlabelled "
    "training images within it too (stricter)",
}


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str  # why, in words a table cell holds


def decide(
    paired: PairedDrop, budget_pts: float, confidence: float, flips: Flips | None = None
) -> Verdict:
    """Accept a candidate only when the drop's upper bound on the labelled images fits the
    budget and, where unlabelled images were measured (rule paired-bound+flips), so does
    their flip rate's bound.

    The labelled bound carries the promise: a candidate whose true drop exceeds the budget
    passes it with probability at most 1 - `confidence`. The flips can only refuse: they are
    counted on training images the calibration did not use, which the head was fitted on,
    so they understate the flips on new images and could not certify alone; and a flip rate
    bounds the drop loosely where answers change both ways."""
    bound = paired.upper_pts(confidence)
    if bound > budget_pts + BUDGET_TOLERANCE:
        return Verdict(False, f"bound {bound:.2f} > budget")
    if flips is not None:
        flip_bound = flips.upper_pts(confidence)
        if flip_bound > budget_pts + BUDGET_TOLERANCE:
            return Verdict(False, f"flips bound {flip_bound:.2f} > budget")
    return Verdict(True, "within budget")


def promise_note(
    test: PairedDrop, budget_pts: float, guard_upper_pts: float | None, confidence: float
) -> tuple[str, bool]:
    """The drop measured on test with its interval, beside the budget and the bound the guard
    stated on val; and whether test contradicts that bound (the whole interval above it)."""
    low, high = test.interval_pts(confidence)
    text = (
        f"INT8 vs FP32 on {test.n} test images: drop {test.drop_pts:+.2f} pts "
        f"({test.worse} worse, {test.better} better; {confidence:.0%} interval "
        f"{low:+.2f} to {high:+.2f}); budget {budget_pts:.2f}"
    )
    if guard_upper_pts is None:
        return text, False
    text += f", the guard's {confidence:.0%} bound on val {guard_upper_pts:.2f}"
    outside = low > guard_upper_pts
    if outside:
        text += ": test contradicts the guard's bound (val was not like test?)"
    return text, outside
