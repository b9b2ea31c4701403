"""`edgetl bench`: accuracy and latency of artifacts, gated against a baseline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main, trust_option
from edgetl.cli.declared import options_of
from edgetl.cli.devices import lab_option, on_option
from edgetl.cli.output import print_report, print_robustness
from edgetl.core.errors import EdgetlError
from edgetl.core.ui import stdout_console
from edgetl.core.verdict import check
from edgetl.stages.bench.options import BenchOptions


@main.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@options_of(BenchOptions)
@trust_option
@on_option("Run on the lab's devices over ssh: NAME[,NAME...] or all (see `edgetl devices`); "
           "--data is copied there, or names a folder there as device:/PATH.")  # fmt: skip
@lab_option
@handle_errors
def bench(
    artifacts: tuple[Path, ...], on: str | None, lab_file: Path | None, **kwargs: Any
) -> None:
    """Measure accuracy and batch-1 latency of exported ARTIFACTS with their runtimes.

    Needs nothing but the artifact directory and its runtime: without --data it measures the
    reference set stored in the artifact, with agreement against the FP32 model.
    """
    from edgetl.stages.bench.harness import bench as run_bench

    options = BenchOptions(artifacts=list(artifacts), **kwargs)
    if _detectors(options, on, lab_file):
        return
    if on is not None:
        _bench_on(options, on, lab_file)
        return
    outcome = run_bench(options)
    print_report(stdout_console(), outcome.report)
    check(outcome)


def _detectors(options: BenchOptions, on: str | None, lab_file: Path | None) -> bool:
    """Detector artifacts: benched by stages/detect/measure.py, or on the lab's devices by
    stages/lab/detect.py (all of them detectors, or none)."""
    from edgetl.core.records.detector import is_detector

    found = [is_detector(path) for path in options.artifacts]
    if not any(found):
        return False
    if not all(found):
        raise EdgetlError("bench: give detector artifacts or classifier artifacts, not both")
    from edgetl.cli.detect_output import print_detect_bench, print_detect_lab

    if on is not None:
        from edgetl.stages.detect.reports import write_lab
        from edgetl.stages.lab.detect import bench_detectors_on

        outcome = bench_detectors_on(options, on, lab_file)
        outcome.report.command = list(sys.argv)
        write_lab(outcome.report, options)
        print_detect_lab(outcome.report)
        check(outcome)
        return True
    from edgetl.stages.detect.measure import bench_detectors

    report = bench_detectors(options)
    print_detect_bench(report)
    check(report)
    return True


def _bench_on(options: BenchOptions, on: str, lab_file: Path | None) -> None:
    """The lab: one table over every device, the reports written here, exit 1 naming each
    device that failed or regressed."""
    from edgetl.core.ui import table
    from edgetl.stages.lab import reports
    from edgetl.stages.lab.bench import bench_on

    if options.trust:
        raise EdgetlError("--trust with --on: check signatures on the device (not yet relayed)")
    outcome = bench_on(options, on, lab_file)
    outcome.report.command = list(sys.argv)
    reports.write(outcome.report, options.json_path, options.md_path, options.junit_path,
                  options.plot_path)  # fmt: skip
    title = f"edgetl bench on the lab {outcome.report.lab} (batch 1)"
    console = stdout_console()
    console.print(table(title, reports.COLUMNS, reports.rows(outcome.report)))
    merged = reports.merged(outcome.report)
    if merged is not None:
        print_robustness(console, merged.results)
    check(outcome)
