"""Regression statistics: is a candidate slower than a base beyond noise and a threshold?

Two designs, one decision rule:
- paired rounds (`edgetl compare` of two artifacts): each round measures both, in
  alternating order, so a burst of machine noise hits both; the per-round ratios of medians
  are bootstrapped.
- stored samples (a baseline report.json): the two sets of raw latency samples are
  bootstrapped independently, so the noise recorded in both widens the interval.

A regression is declared only when the whole confidence interval of candidate/base lies
above 1 + threshold: a slower candidate that noise cannot explain.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


FEW_ROUNDS = 6  # below this a bootstrap of a median has few distinct values


@dataclass(frozen=True)
class LatencyVerdict:
    ratio: float  # candidate p50 / base p50
    low: float  # confidence interval of the ratio
    high: float
    threshold_pct: float
    method: str  # "paired rounds" | "stored samples"
    warning: str = ""  # why the numbers deserve less trust (order effect, few rounds)

    @property
    def regressed(self) -> bool:
        return self.low > 1 + self.threshold_pct / 100

    @property
    def undecided(self) -> bool:
        """The interval holds both "not slower beyond the threshold" and "slower beyond it"."""
        return self.low <= 1 + self.threshold_pct / 100 < self.high

    def verdict(self) -> str:
        """In words, from where the whole interval lies (not only the estimate)."""
        limit = 1 + self.threshold_pct / 100
        if self.regressed:
            return f"slower beyond the {self.threshold_pct:g}% threshold"
        if self.high > limit:  # before "within": the interval is not all within it
            slower = "slower, but " if self.low > 1 else ""
            return (
                f"inconclusive: {slower}the interval reaches past the {self.threshold_pct:g}% "
                "threshold; measure more --rounds"
            )
        if self.low > 1:
            return f"slower, within the {self.threshold_pct:g}% threshold"
        if self.high < 1:
            return "faster"
        return "no significant change"

    def line(self) -> str:
        change = (self.ratio - 1) * 100
        interval = f"{(self.low - 1) * 100:+.1f}%..{(self.high - 1) * 100:+.1f}%"
        warning = f" [warning: {self.warning}]" if self.warning else ""
        return (
            f"p50 {change:+.1f}% ({CONFIDENCE:.0%} CI {interval}, {self.method}): "
            f"{self.verdict()}{warning}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "regressed": self.regressed, "verdict": self.verdict()}


def paired_ratio(
    base_rounds: list[np.ndarray],
    candidate_rounds: list[np.ndarray],
    threshold_pct: float,
    seed: int = 0,
    base_first: list[bool] | None = None,
) -> LatencyVerdict:
    """Rounds measured side by side: the median over rounds of per-round median ratios,
    bootstrapped over whole rounds (each round is one block of the machine's state).

    `base_first[i]`: whether round i measured the base first. When the rounds of one order
    disagree with those of the other (their intervals do not overlap), the machine favours
    a position, not a model: the interval is widened to cover both orders and a warning
    says so (on a busy machine A/B gave -27% and B/A +55%, where reciprocals would be +37%).
    """
    ratios = np.asarray(
        [np.median(c) / np.median(b) for b, c in zip(base_rounds, candidate_rounds, strict=True)]
    )
    low, high = median_interval(ratios)
    warnings = []
    if base_first is not None:
        order = np.asarray(base_first, bool)
        first, second = ratios[order], ratios[~order]
        if len(first) >= 2 and len(second) >= 2:
            (a_low, a_high), (b_low, b_high) = median_interval(first), median_interval(second)
            if a_high < b_low or b_high < a_low:
                low, high = min(low, a_low, b_low), max(high, a_high, b_high)
                warnings.append(
                    f"the order changes the result ({(np.median(first) - 1) * 100:+.1f}% with the "
                    f"base first, {(np.median(second) - 1) * 100:+.1f}% with it second): the "
                    "machine is too busy for a tight interval, the interval covers both"
                )
    ratio = float(np.median(ratios))
    span = high - low
    if len(ratios) < FEW_ROUNDS and span > 0 and min(ratio - low, high - ratio) < 0.1 * span:
        warnings.append(f"only {len(ratios)} rounds: the estimate sits at the edge of its interval")
    return LatencyVerdict(ratio, low, high, threshold_pct, "paired rounds", "; ".join(warnings))


def median_interval(values: np.ndarray) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics
    x(k) and x(n+1-k) with k the largest where P(Binomial(n, 1/2) < k) <= (1 - CONFIDENCE)/2.

    Bootstrapping the median of 10 round ratios was too narrow: under load an interval held
    the reciprocal of the opposite comparison's estimate 16 times in 20, not 19. With n <= 5
    no k qualifies and the interval is the range (coverage 1 - 2^(1-n)).
    """
    ordered = np.sort(np.asarray(values, np.float64))
    n, tail = len(ordered), (1 - CONFIDENCE) / 2
    k, cumulative = 0, 0.0
    for j in range(n + 1):  # cumulative = P(X <= j - 1) before adding j
        if cumulative + math.comb(n, j) / 2**n > tail:
            break
        cumulative += math.comb(n, j) / 2**n
        k = j + 1
    k = max(k, 1)
    return float(ordered[k - 1]), float(ordered[n - k])


def sample_ratio(
    base: np.ndarray, candidate: np.ndarray, threshold_pct: float, seed: int = 0
) -> LatencyVerdict:
    """Two stored sets of samples: the ratio of medians, each set resampled on its own."""
    base, candidate = np.asarray(base, np.float64), np.asarray(candidate, np.float64)
    if len(base) < 2 or len(candidate) < 2:
        raise ValueError("need at least two latency samples on each side")
    rng = np.random.default_rng(seed)
    base_medians = np.median(rng.choice(base, (BOOTSTRAP_SAMPLES, len(base))), axis=1)
    cand_medians = np.median(rng.choice(candidate, (BOOTSTRAP_SAMPLES, len(candidate))), axis=1)
    low, high = _interval(cand_medians / base_medians)
    ratio = float(np.median(candidate) / np.median(base))
    return LatencyVerdict(ratio, low, high, threshold_pct, "stored samples")


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def coefficient_of_variation(samples: np.ndarray) -> float:
    samples = np.asarray(samples, np.float64)
    return float(samples.std() / samples.mean()) if samples.mean() > 0 else 0.0
