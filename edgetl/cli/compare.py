"""`edgetl compare`: is a candidate slower or less accurate than a base?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main, trust_option
from edgetl.cli.devices import lab_option
from edgetl.core.ui import make_console
from edgetl.core.verdict import check


@main.command()
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--data", default=None, help="As for bench [default: BASE's reference set].")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default=None)
@click.option("--limit", type=int, default=None, help="Measure accuracy on N images.")
@click.option(
    "--rounds", type=int, default=10, show_default=True, help="Fresh-session rounds, at least."
)
@click.option(
    "--max-rounds",
    type=int,
    default=None,
    help="While the interval straddles the threshold, add rounds up to this many "
    "[default: 3x --rounds].",
)
@click.option(
    "--iterations", type=int, default=30, show_default=True, help="Runs per artifact and round."
)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=None, help="Runtime threads [default: the target's].")
@click.option(
    "--max-regression",
    type=float,
    default=5.0,
    show_default=True,
    help="% of p50 the candidate may be slower before the confidence interval fails it.",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="Top-1 points the candidate may lose on the same images.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--on",
    "on",
    default=None,
    help="Run the comparison on the lab's devices over ssh: NAME[,NAME...] or all; the "
    "verdicts come back here.",
)
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
    from edgetl.stages.bench.compare import CompareOptions
    from edgetl.stages.bench.compare import compare as run_compare

    if on is not None:
        _compare_on(CompareOptions(base=base, candidate=candidate, **kwargs), on, lab_file,
                    as_json)  # fmt: skip
        return
    result = run_compare(CompareOptions(base=base, candidate=candidate, **kwargs), make_console())
    if as_json:  # always the verdict (passed false too), then exit 1 with the reason
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif result.passed:
        click.echo(result.line())
    check(result)


def _compare_on(options: Any, on: str, lab_file: Path | None, as_json: bool) -> None:
    from edgetl.core.errors import EdgetlError
    from edgetl.stages.lab.compare import compare_on

    if options.trust:
        raise EdgetlError("--trust with --on: check signatures on the device (not yet relayed)")
    outcome = compare_on(options, on, lab_file, make_console())
    if as_json:
        click.echo(json.dumps({"devices": [run.to_dict() for run in outcome.devices]}, indent=2))
    else:
        for run in outcome.devices:
            click.echo(run.line())
    check(outcome)
