"""The regression gate: a bench report against a stored baseline, artifact by artifact, from
the raw latency samples both recorded (core/measures/regression.py decides) and their top-1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.core.errors import EdgetlError
from edgetl.core.measures.evidence import DEFAULT_BUDGET_PTS
from edgetl.core.measures.metrics import drop_pts, within_budget
from edgetl.core.measures.regression import sample_ratio
from edgetl.core.records import AccuracyCheck, BenchReport, BenchResult, LatencyCheck
from edgetl.core.records.robustness import Condition, Robustness, RobustnessCheck


@dataclass(frozen=True)
class Gate:
    """What a report is held to: the baseline file and the two limits."""

    baseline: Path | None
    max_regression: float  # percent of p50
    max_accuracy_drop: float  # points of top-1
    max_robustness_drop: float = DEFAULT_BUDGET_PTS  # points of mean corrupted / attacked top-1


def check_baseline(
    report: BenchReport, baseline: BenchReport, gate: Gate, latency: bool = True
) -> list[str]:
    """Compare each artifact with the baseline entry of the same name; returns failures.
    `latency` False: accuracy alone (an emulated device's latency gates nothing)."""
    stored = {entry.name: entry for entry in baseline.results}
    failures = []
    for entry in report.results:
        base = stored.get(entry.name)
        if base is None:
            entry.checks.baseline = f"no entry named {entry.name} in {gate.baseline}"
            continue
        if (base.backend, base.proxy_for) != (entry.backend, entry.proxy_for):
            raise EdgetlError(
                f"--baseline {gate.baseline}: {entry.name} was measured there with "
                f"{_ran(base)}, here with {_ran(entry)}; latencies of different runtimes "
                "cannot gate each other. Make the baseline where the candidate runs"
            )
        failures += against_baseline(entry, base, gate.max_regression, gate.max_accuracy_drop,
                                     latency)  # fmt: skip
        failures += robustness_against(entry, base, gate.max_robustness_drop)
    return failures


def _same_answers(entry: BenchResult, base: BenchResult) -> tuple[float | None, int | None]:
    """The share of images given the baseline's top-1 answer, and how many were not."""
    mine, theirs = entry.accuracy.predictions, base.accuracy.predictions
    if not mine or len(mine) != len(theirs):
        return None, None
    differing = int(sum(a != b for a, b in zip(mine, theirs, strict=True)))
    return round(1 - differing / len(mine), 4), differing


def _ran(entry: BenchResult) -> str:
    if entry.proxy_for:
        return f"{entry.backend} as the host proxy for {entry.proxy_for}"
    return entry.backend


def against_baseline(
    entry: BenchResult,
    base: BenchResult,
    max_regression: float,
    max_accuracy_drop: float,
    latency: bool = True,
) -> list[str]:
    """One artifact against its stored baseline, from the raw samples recorded in both.

    Records the verdicts in `entry.checks`; returns one line per failed check. Accuracy is
    compared only when both measured the same number of images.
    """
    verdict = None
    if latency:
        verdict = sample_ratio(
            np.asarray(base.samples_ms), np.asarray(entry.samples_ms), max_regression
        )
        entry.checks.latency = LatencyCheck(**verdict.to_dict(), line=verdict.line())
    drop = drop_pts(base.accuracy.top1, entry.accuracy.top1)
    same_images = base.accuracy.n == entry.accuracy.n
    failed = same_images and not within_budget(drop, max_accuracy_drop)
    entry.checks.accuracy = AccuracyCheck(round(drop, 4), max_accuracy_drop, same_images, failed,
                                          *_same_answers(entry, base))  # fmt: skip
    failures = []
    if verdict is not None and verdict.regressed:
        failures.append(f"{entry.name}: {verdict.line()}")
    if failed:
        failures.append(
            f"{entry.name}: top-1 {drop:+.2f} pts below the baseline "
            f"(max accuracy drop {max_accuracy_drop:g})"
        )
    return failures


def robustness_against(entry: BenchResult, base: BenchResult, max_drop: float) -> list[str]:
    """compare_robustness of one classifier artifact; its verdict in `entry.checks`."""
    failures, verdict = compare_robustness(entry.name, entry.robustness, base.robustness,
                                           max_drop)  # fmt: skip
    if verdict is not None:
        entry.checks.robustness = verdict
    return failures


def compare_robustness(
    name: str, mine: Robustness | None, theirs: Robustness | None, max_drop: float
) -> tuple[list[str], RobustnessCheck | None]:
    """Mean corrupted measure and the measure under each attack epsilon against the
    baseline's, when both measured them on as many images (the same conditions for the
    mean); one line per measure that lost more than `max_drop` points, and the verdict."""
    if mine is None or theirs is None or mine.n != theirs.n:
        return [], None
    lost: dict[str, float] = {}
    both = mine.mean_corrupted is not None and theirs.mean_corrupted is not None
    if both and _conditions(mine.corruptions) == _conditions(theirs.corruptions):
        assert mine.mean_corrupted is not None and theirs.mean_corrupted is not None
        lost["mean corrupted"] = drop_pts(theirs.mean_corrupted, mine.mean_corrupted)
    stored = {f"{c.level:g}": c.score for c in theirs.attack}
    attack = {f"{c.level:g}": drop_pts(stored[f"{c.level:g}"], c.score)
              for c in mine.attack if f"{c.level:g}" in stored}  # fmt: skip
    measures = [*lost.items(), *((f"under attack {k}/255", v) for k, v in attack.items())]
    failures = [
        f"{name}: {mine.measure} {what} {drop:+.2f} pts below the baseline "
        f"(max robustness drop {max_drop:g})"
        for what, drop in measures
        if not within_budget(drop, max_drop)
    ]
    verdict = RobustnessCheck(
        None if "mean corrupted" not in lost else round(lost["mean corrupted"], 4),
        {key: round(value, 4) for key, value in attack.items()},
        max_drop,
        bool(failures),
    )
    return failures, verdict


def _conditions(found: list[Condition]) -> list[tuple[str, float]]:
    """Which conditions were measured (their pixels may differ by a rounding between two
    machines' OpenCV builds; the report's inputs_sha256 says whether they did)."""
    return [(condition.family, condition.level) for condition in found]
