"""`edgetl compare`: is a candidate slower or less accurate than a base?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main, trust_option
from edgetl.cli.declared import options_of
from edgetl.cli.devices import lab_option, on_option
from edgetl.core.errors import EdgetlError
from edgetl.core.verdict import check
from edgetl.stages.bench.options import CompareOptions


@main.command()
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@options_of(CompareOptions)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@on_option("Run the comparison on the lab's devices over ssh: NAME[,NAME...] or all; the "
           "verdicts come back here.")  # fmt: skip
@lab_option
@trust_option
@handle_errors
def compare(
    base: Path,
    candidate: Path,
    as_json: bool,
    on: str | None,
    lab_file: Path | None,
    **kwargs: Any,
) -> None:
    """Is CANDIDATE slower or less accurate than BASE (an artifact or a stored report.json)?

    Interleaved rounds of fresh runtime sessions in alternating order; the ratio of medians
    candidate/base with a bootstrap confidence interval. Exit 1 when the interval says the
    candidate is slower by more than --max-regression, or its top-1 on the same images is
    more than --max-accuracy-drop below; the reason in one line.
    """
    from edgetl.core.records.detector import is_detector
    from edgetl.stages.bench.compare import compare as run_compare

    options = CompareOptions(base=base, candidate=candidate, **kwargs)
    if on is not None:
        _compare_on(options, on, lab_file, as_json)
        return
    if is_detector(candidate) or is_detector(base):
        from edgetl.stages.detect.compare import compare_detectors

        result = compare_detectors(options)
    else:
        result = run_compare(options)
    if as_json:  # always the verdict (passed false too), then exit 1 with the reason
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif result.passed:
        click.echo(result.line())
    check(result)


def _compare_on(options: Any, on: str, lab_file: Path | None, as_json: bool) -> None:
    from edgetl.stages.lab.compare import compare_on

    if options.trust:
        raise EdgetlError("--trust with --on: check signatures on the device (not yet relayed)")
    outcome = compare_on(options, on, lab_file)
    if as_json:
        click.echo(json.dumps({"devices": [run.to_dict() for run in outcome.devices]}, indent=2))
    else:
        for run in outcome.devices:
            click.echo(run.line())
    check(outcome)
