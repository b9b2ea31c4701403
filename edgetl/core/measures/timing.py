"""Latency measurement: warm-up, then per-call wall time with perf_counter_ns."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

ORDER_SEED = 0  # interleaved rounds are shuffled, reproducibly
BLOCK_SAMPLES = 20  # samples per call per round, for callers that choose rounds by iterations


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

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Latency:
        """The summary `to_dict` wrote (a device's `probe-latency`, a report's latency_ms)."""
        return cls(**{name: float(data[name]) for name in cls.__dataclass_fields__})


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


def measure(call: Callable[[], object], iterations: int, warmup: int = 0) -> np.ndarray:
    """Per-call latencies in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    samples = np.empty(iterations, dtype=np.float64)
    for index in range(iterations):
        start = time.perf_counter_ns()
        call()
        samples[index] = (time.perf_counter_ns() - start) / 1e6
    return samples


def interleaved_p50(
    calls: Mapping[str, Callable[[], object]], iterations: int, rounds: int = 5, warmup: int = 10
) -> dict[str, float]:
    """Batch-1 p50 in ms of each call, measured in `rounds` interleaved blocks.

    Shared machines are noisy in bursts; interleaving lets a burst hit every model alike, so
    the ratios between them hold even when the absolute numbers drift.
    """
    samples: dict[str, list[np.ndarray]] = {name: [] for name in calls}
    per_round = max(1, iterations // rounds)
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name].append(measure(call, per_round, warmup))
    return {name: float(np.median(np.concatenate(parts))) for name, parts in samples.items()}


def rounds_for(iterations: int) -> int:
    """Rounds of BLOCK_SAMPLES samples each (at least 5): more rounds average more of a
    shared machine's moods (two identical graphs among seven: +-6% in 5 rounds, +-2% in 25)."""
    return max(5, iterations // BLOCK_SAMPLES)


def interleaved_samples(
    calls: Mapping[str, Callable[[], object]],
    iterations: int,
    rounds: int = 5,
    warmup: int = 10,
    min_duration_s: float = 0.0,
) -> dict[str, np.ndarray]:
    """Per-call latencies (ms) of each call, measured in interleaved rounds.

    Each round measures every call in an order shuffled with a fixed seed, never the same call
    twice in a row across two rounds: a block timed right after its own block runs with its
    caches and its runtime's spinning threads warm. (With A B C, C B A alternation the call
    listed last was that one: two identical INT8 graphs timed in 25-50 rounds among seven
    models differed by 1.07-1.11x on this 2-core machine; shuffled, 1.005 +- 0.018 over six
    runs.) Rounds continue past `rounds` until each call has `iterations` samples and at
    least `min_duration_s` seconds of them.
    """
    names = list(calls)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in names}
    per_round = max(1, iterations // max(rounds, 1))
    for name in names:  # warm every model up once, before any timed round
        measure(calls[name], 0, warmup)
    done, shuffler, last = 0, random.Random(ORDER_SEED), None
    while True:
        order = shuffler.sample(names, len(names))
        if len(order) > 1 and order[0] == last:
            order.append(order.pop(0))
        for name in order:
            samples[name].append(measure(calls[name], per_round, 0))
        done, last = done + 1, order[-1]
        enough = min(sum(len(s) for s in samples[n]) for n in names) >= iterations
        spent = min(float(np.concatenate(samples[n]).sum()) / 1000 for n in names)
        if done >= rounds and enough and spent >= min_duration_s:
            return {name: np.concatenate(parts) for name, parts in samples.items()}
