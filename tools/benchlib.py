"""Shared by the tools/bench_*.py scripts: latency measured side by side, noise spread evenly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgetl.bench.timing import measure


def interleaved_p50(
    calls: dict[str, Callable[[], object]], iterations: int, rounds: int = 5, warmup: int = 10
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
