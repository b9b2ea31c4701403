"""`edgetl compare BASE CANDIDATE`: is the candidate slower, or less accurate, than the base?

Latency: rounds of fresh runtime sessions, base and candidate in alternating order, the
per-round ratio of medians bootstrapped (edgetl/core/measures/regression.py). BASE may be a
stored report (report.json) of the same artifact on the same device; then its raw samples are
the base.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends import Placement, Runner, resolve, run_all
from edgetl.core.artifact.signing import trusted_keys
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.metrics import drop_pts, top1, within_budget
from edgetl.core.measures.regression import LatencyVerdict, paired_ratio, sample_ratio
from edgetl.core.measures.timing import measure
from edgetl.core.records import MANIFEST_FILE, BenchReport, BenchResult, Manifest
from edgetl.stages.bench.evalset import eval_set
from edgetl.stages.bench.options import CompareOptions

Loader = Callable[[], Runner]


@dataclass
class Comparison:
    latency: LatencyVerdict
    base_top1: float | None
    candidate_top1: float
    n: int
    max_accuracy_drop: float
    seconds: float
    metric: str = "top-1"  # a detector's: "mAP50-95" (points of mAP, not of images)

    @property
    def accuracy_drop(self) -> float | None:
        return None if self.base_top1 is None else drop_pts(self.base_top1, self.candidate_top1)

    @property
    def accuracy_failed(self) -> bool:
        drop = self.accuracy_drop
        return drop is not None and not within_budget(drop, self.max_accuracy_drop)

    @property
    def passed(self) -> bool:
        return not self.latency.regressed and not self.accuracy_failed

    @property
    def failures(self) -> list[str]:
        """The verdict's line when it failed (latency and accuracy are both in it)."""
        return [] if self.passed else [self.line()]

    def line(self) -> str:
        metric = self.metric
        if self.accuracy_drop is None:
            accuracy = f"{metric} {self.candidate_top1:.2%} (base measured other images)"
        else:
            accuracy = (
                f"{metric} {self.candidate_top1:.2%} vs {self.base_top1:.2%} "
                f"({0.0 - self.accuracy_drop:+.2f} pts on {self.n} images"
                f"{', beyond --max-accuracy-drop' if self.accuracy_failed else ''})"
            )
        verdict = "REGRESSION" if not self.passed else "ok"
        return f"{verdict}: {self.latency.line()}; {accuracy}; {self.seconds:.1f} s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "latency": self.latency.to_dict(),
            "base_top1": self.base_top1,
            "candidate_top1": self.candidate_top1,
            "accuracy_drop_pts": self.accuracy_drop,
            "metric": self.metric,
            "n": self.n,
            "seconds": round(self.seconds, 2),
        }


def check_options(opts: CompareOptions) -> None:
    for option, value, least in (
        ("--rounds", opts.rounds, 3),
        (
            "--max-rounds",
            opts.max_rounds if opts.max_rounds is not None else opts.rounds,
            opts.rounds,
        ),
        ("--iterations", opts.iterations, 2),
        ("--warmup", opts.warmup, 0),
    ):
        if value < least:
            raise EdgetlError(f"{option} {value}: must be at least {least}")
    if opts.max_regression < 0:
        raise EdgetlError(f"--max-regression {opts.max_regression}: give a percentage >= 0")


def compare(opts: CompareOptions) -> Comparison:
    """The comparison, with `passed` and `failures` (the command line exits 1 on a failed one
    after printing it)."""
    check_options(opts)
    started = time.perf_counter()
    keys = trusted_keys(opts.trust)
    candidate = Manifest.read(opts.candidate, trust=keys)
    if opts.base.is_file():
        result = _against_report(opts, candidate)
    elif (opts.base / MANIFEST_FILE).is_file():
        result = _against_artifact(opts, candidate, keys)
    else:
        raise EdgetlError(f"{opts.base}: neither an artifact directory nor a report.json")
    result.seconds = time.perf_counter() - started
    return result


def _loader(path: Path, manifest: Manifest, threads: int | None) -> tuple[Loader, Placement]:
    """How to load the artifact here (its runtime, or the host proxy), and where it runs."""
    placement = resolve(manifest, str(path))
    spec = manifest.runtime_spec(threads)
    return (lambda: placement.runtime.load(path, spec)), placement


def _same_placement(base: tuple[Path, Placement], candidate: tuple[Path, Placement]) -> str:
    """A host proxy's latency is not the device's: both run on their target's runtime, or
    both on the same proxy (then the verdict says so), never one of each."""
    (base_path, base_at), (cand_path, cand_at) = base, candidate
    if base_at.proxy == cand_at.proxy:
        if base_at.proxy is None:
            return ""
        return f"both run on the host proxy {base_at.proxy}: its latency, not the device's"
    raise EdgetlError(
        f"cannot compare {_where(base_path, base_at)} with {_where(cand_path, cand_at)}: a "
        "host proxy's latency says nothing of the device's; compare artifacts that run alike"
    )


def _where(path: Path, at: Placement) -> str:
    if at.proxy is None:
        return f"{path} on {at.backend.name}"
    return f"{path} on {at.proxy} (host proxy for {at.backend.name})"


def _against_artifact(opts: CompareOptions, candidate: Manifest, keys: list[Any]) -> Comparison:
    base = Manifest.read(opts.base, trust=keys)
    if base.classes != candidate.classes:
        raise EdgetlError(
            f"{opts.candidate}: classes differ from {opts.base}'s; compare models of one run"
        )
    chosen = eval_set(opts.base, base, opts.data, opts.split, opts.limit)
    load_base, base_at = _loader(opts.base, base, opts.threads)
    load_candidate, candidate_at = _loader(opts.candidate, candidate, opts.threads)
    note = _same_placement((opts.base, base_at), (opts.candidate, candidate_at))
    if note:
        say(note)
    say(f"compare on {chosen.label}: {opts.rounds} rounds x {opts.iterations} runs")
    verdict = compare_runners(
        load_base,
        load_candidate,
        chosen.images[:1],
        opts.rounds,
        opts.iterations,
        opts.warmup,
        opts.max_regression,
        opts.max_rounds,
    )
    base_top1 = _top1(load_base(), chosen.images, chosen.labels)
    candidate_top1 = _top1(load_candidate(), chosen.images, chosen.labels)
    return Comparison(
        verdict, base_top1, candidate_top1, len(chosen.labels), opts.max_accuracy_drop, 0.0
    )


def compare_runners(
    load_base: Loader,
    load_candidate: Loader,
    single: np.ndarray,
    rounds: int,
    iterations: int,
    warmup: int,
    threshold_pct: float,
    max_rounds: int | None = None,
    call: Callable[[Any, np.ndarray], Callable[[], object]] | None = None,
) -> LatencyVerdict:
    """Rounds of fresh sessions in alternating order; each round yields one paired ratio.
    `call`: what one timed run is, given a runner and `single` (default: the graph alone).

    While the interval straddles the threshold after `rounds` (undecided: it could be a
    regression, or not), pairs of rounds are added up to `max_rounds` (default 3x): on a
    busy machine 10 rounds detected a 20% slowdown 15 times in 20.
    """
    single = np.ascontiguousarray(single)
    base_rounds: list[np.ndarray] = []
    candidate_rounds: list[np.ndarray] = []
    base_first: list[bool] = []
    loaders = {"base": load_base, "candidate": load_candidate}
    limit = 3 * rounds if max_rounds is None else max_rounds
    index = 0
    while True:
        order = ["base", "candidate"] if index % 2 == 0 else ["candidate", "base"]
        # Loaded in the order measured too: neither model always gets the fresher session.
        runners = {name: loaders[name]() for name in order}
        found = {}
        for name in order:
            found[name] = measure((call or _call)(runners[name], single), iterations, warmup)
        base_rounds.append(found["base"])
        candidate_rounds.append(found["candidate"])
        base_first.append(order[0] == "base")
        index += 1
        if index < rounds or index % 2:
            continue
        verdict = paired_ratio(base_rounds, candidate_rounds, threshold_pct, base_first=base_first)
        if not verdict.undecided or index + 2 > limit:
            return verdict


def _call(runner: Runner, images: np.ndarray) -> Callable[[], object]:
    return lambda: runner.run(images)


def _top1(runner: Runner, images: np.ndarray, labels: np.ndarray) -> float:
    return top1(run_all(runner, images), labels)


def _against_report(opts: CompareOptions, candidate: Manifest) -> Comparison:
    report = BenchReport.read(opts.base)
    base = _entry_for(report, candidate, opts.base)
    base_samples = base.stored_samples(opts.base, report.results.index(base))
    chosen = eval_set(opts.candidate, candidate, opts.data, opts.split, opts.limit)
    load_candidate, candidate_at = _loader(opts.candidate, candidate, opts.threads)
    if bool(base.proxy_for) != (candidate_at.proxy is not None):
        stored = f" (host proxy for {base.proxy_for})" if base.proxy_for else ""
        raise EdgetlError(
            f"cannot compare {_where(opts.candidate, candidate_at)} with {opts.base} measured "
            f"on {base.backend}{stored}: a host proxy's latency says nothing of the device's"
        )
    runner = load_candidate()
    call = _call(runner, np.ascontiguousarray(chosen.images[:1]))
    measure(call, 0, opts.warmup)
    samples = np.concatenate([measure(call, opts.iterations) for _ in range(opts.rounds)])
    say(
        f"compare {opts.candidate} with {opts.base} ({base.name}, {len(base.samples_ms)} "
        f"stored samples) on {chosen.label}"
    )
    verdict = sample_ratio(base_samples, samples, opts.max_regression)
    candidate_top1 = _top1(runner, chosen.images, chosen.labels)
    same_images = base.accuracy.n == len(chosen.labels)
    return Comparison(
        verdict,
        base.accuracy.top1 if same_images else None,
        candidate_top1,
        len(chosen.labels),
        opts.max_accuracy_drop,
        0.0,
    )


def _entry_for(report: BenchReport, candidate: Manifest, path: Path) -> BenchResult:
    if len(report.results) == 1:
        return report.results[0]
    matches = [entry for entry in report.results if entry.name == candidate.name]
    if len(matches) != 1:
        names = ", ".join(entry.name for entry in report.results)
        raise EdgetlError(
            f"{path}: holds {names}; none (or several) named {candidate.name}. Give a report "
            "of that artifact alone"
        )
    return matches[0]
