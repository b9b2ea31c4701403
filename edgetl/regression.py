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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class LatencyVerdict:
    ratio: float  # candidate p50 / base p50
    low: float  # confidence interval of the ratio
    high: float
    threshold_pct: float
    method: str  # "paired rounds" | "stored samples"

    @property
    def regressed(self) -> bool:
        return self.low > 1 + self.threshold_pct / 100

    @property
    def improved(self) -> bool:
        return self.high < 1 - self.threshold_pct / 100

    def line(self) -> str:
        change = (self.ratio - 1) * 100
        interval = f"{(self.low - 1) * 100:+.1f}%..{(self.high - 1) * 100:+.1f}%"
        if self.regressed:
            verdict = f"slower beyond the {self.threshold_pct:g}% threshold"
        elif self.improved:
            verdict = "faster"
        else:
            verdict = f"within the {self.threshold_pct:g}% threshold or noise"
        return f"p50 {change:+.1f}% ({CONFIDENCE:.0%} CI {interval}, {self.method}): {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "regressed": self.regressed}


def paired_ratio(
    base_rounds: list[np.ndarray],
    candidate_rounds: list[np.ndarray],
    threshold_pct: float,
    seed: int = 0,
) -> LatencyVerdict:
    """Rounds measured side by side: the median over rounds of per-round median ratios."""
    ratios = np.asarray(
        [np.median(c) / np.median(b) for b, c in zip(base_rounds, candidate_rounds, strict=True)]
    )
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ratios), (BOOTSTRAP_SAMPLES, len(ratios)))
    low, high = _interval(np.median(ratios[picks], axis=1))
    return LatencyVerdict(float(np.median(ratios)), low, high, threshold_pct, "paired rounds")


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
