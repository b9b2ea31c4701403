"""What `bench` and `compare` are asked, declared once (core/options.py): the command-line
options, their defaults and help, and which of them a lab device is handed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetl.core.measures.evidence import DEFAULT_BUDGET_PTS
from edgetl.core.options import joined, numbers, option
from edgetl.stages.bench.gate import Gate

SPLITS = ("test", "val", "train")
THREADS_HELP = "Runtime threads [default: the target's]."


@dataclass
class BenchOptions:
    artifacts: list[Path]
    data: str | None = option(
        None,
        "Images to measure on: the run's own data (then --split picks the role) or any "
        "folder of <class>/<images> (every image) [default: the artifact's reference set].",
    )
    split: str | None = option(
        None,
        "With the run's own --data: which role [default: test; val and train were chosen "
        "or fitted on].",
        choices=SPLITS,
        remote=True,
    )
    iterations: int = option(200, "Batch-1 samples, at least.", remote=True)
    warmup: int = option(20, remote=True)
    rounds: int = option(
        5, "Interleaved rounds across the artifacts (A B C, C B A, ...).", remote=True
    )
    min_duration: float = option(
        0.0, "Keep measuring until each artifact has this many seconds of samples.", remote=True
    )
    batch: tuple[int, ...] = option(
        (1,),
        "Batch sizes, e.g. 1,8 (beyond 1: dynamic-batch artifacts).",
        parse=numbers,
        unparse=joined,
        remote=True,
    )
    threads: int | None = option(None, THREADS_HELP, remote=True)
    limit: int | None = option(None, "Measure a stratified sample of N images.", remote=True)
    cold: bool = option(
        True,
        "Load time, first inference and peak RSS in a fresh process per artifact.",
        negatable=True,
        remote=True,
    )
    json_path: Path | None = option(None, "Write the edgetl.bench/1 report here.", flag="--json")
    md_path: Path | None = option(None, "Write a Markdown table.", flag="--md")
    plot_path: Path | None = option(
        None,
        "Write accuracy vs p50 and latency distributions as PNG (pip install 'edgetl[plot]').",
        flag="--plot",
    )
    junit_path: Path | None = option(
        None, "Write JUnit XML: one test case per artifact and check.", flag="--junit"
    )
    baseline: Path | None = option(
        None, "A stored report.json: exit 1 when an artifact regressed against it."
    )
    max_regression: float = option(
        5.0, "With --baseline: % of p50 the confidence interval must exceed to fail."
    )
    max_accuracy_drop: float = option(
        DEFAULT_BUDGET_PTS, "With --baseline: top-1 points below the baseline that fail."
    )
    trust: tuple[Path, ...] = ()  # public keys one of which must have signed each artifact
    allow_overlap: bool = option(
        False,
        "With a --data folder: also measure images that are the run's own train/val images "
        "(by content); by default they are excluded and counted.",
        remote=True,
    )

    robustness: bool = option(
        False,
        "Also measure top-1 on the reference set under camera conditions (--corruptions) "
        "and, with --attack, under an attack built from the public backbone alone.",
        remote=True,
    )
    corruptions: str = option(
        "camera", "With --robustness: the corruption suite, a shipped name or your own .toml."
    )
    attack: Path | None = option(
        None, "An attack file from `edgetl attack ART` to score (implies --robustness)."
    )
    max_robustness_drop: float = option(
        DEFAULT_BUDGET_PTS,
        "With --baseline and --robustness: points of mean corrupted top-1 or of top-1 under "
        "attack below the baseline's that fail.",
    )

    @property
    def measures_robustness(self) -> bool:
        return self.robustness or self.attack is not None

    @property
    def gate(self) -> Gate:
        return Gate(self.baseline, self.max_regression, self.max_accuracy_drop,
                    self.max_robustness_drop)  # fmt: skip


@dataclass
class CompareOptions:
    base: Path  # an artifact directory or a report.json
    candidate: Path
    data: str | None = option(None, "As for bench [default: BASE's reference set].")
    split: str | None = option(None, choices=SPLITS, remote=True)
    limit: int | None = option(None, "Measure accuracy on N images.", remote=True)
    rounds: int = option(10, "Fresh-session rounds, at least.", remote=True)
    max_rounds: int | None = option(
        None,
        "While the interval straddles the threshold, add rounds up to this many "
        "[default: 3x --rounds].",
        remote=True,
    )
    iterations: int = option(30, "Runs per artifact and round.", remote=True)
    warmup: int = option(5, remote=True)
    threads: int | None = option(None, THREADS_HELP, remote=True)
    max_regression: float = option(
        5.0,
        "% of p50 the candidate may be slower before the confidence interval fails it.",
        remote=True,
    )
    max_accuracy_drop: float = option(
        DEFAULT_BUDGET_PTS, "Top-1 points the candidate may lose on the same images.", remote=True
    )
    trust: tuple[Path, ...] = ()  # public keys one of which must have signed each artifact
