"""A pytest plugin for users' own suites (loaded through the `pytest11` entry point):

    from edgetl.pytest_plugin import assert_no_regression

    def test_int8_latency(edgetl_bench):
        assert_no_regression(edgetl_bench("export/cpu-int8"), "baselines/cpu-int8.json")

`edgetl_bench(ARTIFACT, **options)` benches one artifact (the options of `edgetl bench`:
data, split, iterations, rounds, min_duration, threads, ...) and returns its typed
BenchResult. A baseline is a report written by `edgetl bench ARTIFACT --json FILE` on the
same device.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from edgetl.core.records import BenchResult


@pytest.fixture
def edgetl_bench() -> Callable[..., BenchResult]:
    """Bench one artifact with its runtime; returns the typed result (edgetl.bench/1 entry)."""
    from edgetl.core.ui import make_console
    from edgetl.stages.bench.harness import BenchOptions, bench

    def run(artifact: str | Path, **options: Any) -> BenchResult:
        options.setdefault("iterations", 100)
        options.setdefault("cold", False)
        outcome = bench(BenchOptions([Path(artifact)], **options), make_console(quiet=True))
        return outcome.report.results[0]

    return run


def assert_no_regression(
    result: BenchResult,
    baseline: str | Path,
    max_regression: float = 5.0,
    max_accuracy_drop: float = 1.0,
) -> None:
    """Fail when `result` is slower than the stored baseline beyond noise and
    `max_regression` percent of p50, or its top-1 is more than `max_accuracy_drop` points
    lower on the same number of images."""
    from edgetl.core.records import BenchReport
    from edgetl.stages.bench.harness import against_baseline

    path = Path(baseline)
    if not path.is_file():
        raise AssertionError(
            f"no baseline at {path}: create it on this device with "
            f"`edgetl bench {result.artifact} --json {path}`"
        )
    stored = BenchReport.read(path).results
    matches = [entry for entry in stored if entry.name == result.name] or stored[:1]
    failures = against_baseline(result, matches[0], max_regression, max_accuracy_drop)
    if failures:
        raise AssertionError("; ".join(failures))
