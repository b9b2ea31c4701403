"""`edgetl bench`: accuracy and latency of artifacts, gated against a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgetl.cli.app import handle_errors, main, trust_option
from edgetl.cli.devices import lab_option
from edgetl.core.errors import EdgetlError
from edgetl.core.ui import make_console, stdout_console
from edgetl.core.verdict import check

if TYPE_CHECKING:
    from edgetl.stages.bench.harness import BenchOptions


@main.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data",
    default=None,
    help="Images to measure on: the run's own data (then --split picks the role) or any "
    "folder of <class>/<images> (every image) [default: the artifact's reference set].",
)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train"]),
    default=None,
    help="With the run's own --data: which role [default: test; val and train were chosen "
    "or fitted on].",
)
@click.option(
    "--iterations", type=int, default=200, show_default=True, help="Batch-1 samples, at least."
)
@click.option("--warmup", type=int, default=20, show_default=True)
@click.option(
    "--rounds",
    type=int,
    default=5,
    show_default=True,
    help="Interleaved rounds across the artifacts (A B C, C B A, ...).",
)
@click.option(
    "--min-duration",
    type=float,
    default=0.0,
    show_default=True,
    help="Keep measuring until each artifact has this many seconds of samples.",
)
@click.option(
    "--batch",
    default="1",
    show_default=True,
    help="Batch sizes, e.g. 1,8 (beyond 1: dynamic-batch artifacts).",
)
@click.option("--threads", type=int, default=None, help="Runtime threads [default: the target's].")
@click.option("--limit", type=int, default=None, help="Measure a stratified sample of N images.")
@click.option(
    "--cold/--no-cold",
    default=True,
    show_default=True,
    help="Load time, first inference and peak RSS in a fresh process per artifact.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the edgetl.bench/1 report here.",
)
@click.option("--md", "md_path", type=click.Path(path_type=Path), help="Write a Markdown table.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    help="Write accuracy vs p50 and latency distributions as PNG (pip install 'edgetl[plot]').",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(path_type=Path),
    help="Write JUnit XML: one test case per artifact and check.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="A stored report.json: exit 1 when an artifact regressed against it.",
)
@click.option(
    "--max-regression",
    type=float,
    default=5.0,
    show_default=True,
    help="With --baseline: % of p50 the confidence interval must exceed to fail.",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="With --baseline: top-1 points below the baseline that fail.",
)
@trust_option
@click.option(
    "--on",
    "on",
    default=None,
    help="Run on the lab's devices over ssh: NAME[,NAME...] or all (see `edgetl devices`); "
    "--data is copied there, or names a folder there as device:/PATH.",
)
@lab_option
@click.option(
    "--allow-overlap",
    is_flag=True,
    help="With a --data folder: also measure images that are the run's own train/val images "
    "(by content); by default they are excluded and counted.",
)
@handle_errors
def bench(
    artifacts: tuple[Path, ...], on: str | None, lab_file: Path | None, **kwargs: Any
) -> None:
    """Measure accuracy and batch-1 latency of exported ARTIFACTS with their runtimes.

    Needs nothing but the artifact directory and its runtime: without --data it measures the
    reference set stored in the artifact, with agreement against the FP32 model.
    """
    from edgetl.stages.bench.harness import BenchOptions, print_report
    from edgetl.stages.bench.harness import bench as run_bench

    batch = _batch_sizes(kwargs.pop("batch"))
    options = BenchOptions(artifacts=list(artifacts), batch=batch, **kwargs)
    if on is not None:
        _bench_on(options, on, lab_file)
        return
    outcome = run_bench(options, make_console())
    print_report(stdout_console(), outcome.report)
    check(outcome)


def _bench_on(options: BenchOptions, on: str, lab_file: Path | None) -> None:
    """The lab: one table over every device, the reports written here, exit 1 naming each
    device that failed or regressed."""
    import sys

    from edgetl.core.ui import table
    from edgetl.stages.lab import reports
    from edgetl.stages.lab.bench import bench_on

    if options.trust:
        raise EdgetlError("--trust with --on: check signatures on the device (not yet relayed)")
    outcome = bench_on(options, on, lab_file, make_console())
    outcome.report.command = list(sys.argv)
    reports.write(outcome.report, options.json_path, options.md_path, options.junit_path,
                  options.plot_path)  # fmt: skip
    title = f"edgetl bench on the lab {outcome.report.lab} (batch 1)"
    stdout_console().print(table(title, reports.COLUMNS, reports.rows(outcome.report)))
    check(outcome)


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise EdgetlError(f"--batch {text}: give batch sizes like 1,8") from exc
    return sizes
