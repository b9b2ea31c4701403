"""Latency measurement: warm-up, then per-call wall time with perf_counter_ns."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def summarize(samples_ms: np.ndarray) -> Latency:
    p50, p90, p99 = np.percentile(samples_ms, [50, 90, 99])
    return Latency(
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        mean=float(samples_ms.mean()),
        std=float(samples_ms.std()),
        min=float(samples_ms.min()),
        max=float(samples_ms.max()),
    )


def measure(call: Callable[[], object], iterations: int, warmup: int) -> np.ndarray:
    """Per-call latencies in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    samples = np.empty(iterations, dtype=np.float64)
    for index in range(iterations):
        start = time.perf_counter_ns()
        call()
        samples[index] = (time.perf_counter_ns() - start) / 1e6
    return samples
