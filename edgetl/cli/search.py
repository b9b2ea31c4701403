"""`edgetl search`: the most accurate model within a latency and size budget on a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.devices import lab_option
from edgetl.cli.output import emit
from edgetl.core.ui import make_console, stdout_console
from edgetl.core.verdict import check


@main.command()
@click.option("--data", required=True, help="ImageFolder directory, or 'digits'.")
@click.option("--target", required=True, help="Target profile (see `edgetl targets`).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Search folder.")
@click.option(
    "--max-latency",
    "max_latency",
    required=True,
    metavar="MS|Nx",
    help="Batch-1 latency budget on the target's runtime: in ms (5), or a multiple "
    "of --reference's latency timed in the same rounds as the candidates (1.2x).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    default=None,
    help="An artifact for --target (e.g. the model shipped now), timed with the "
    "candidates: the budget for --max-latency Nx, and a row in the table.",
)
@click.option("--latency", type=click.Choice(["p50", "p90"]), default="p50", show_default=True)
@click.option("--max-size", "max_size_mb", type=float, default=None, help="Model size in MB.")
@click.option("--backbones", default="efficientnet_lite0", show_default=True)
@click.option("--sizes", default="96,128,160,192,224", show_default=True)
@click.option("--heads", default="linear", show_default=True, help="linear, mlpN (e.g. mlp256).")
@click.option("--precisions", default=None, help="e.g. fp32,int8 [default: the target's].")
@click.option("--unfreeze", default="0", show_default=True,
              help="Backbone stages fine-tuned, per candidate: e.g. 0,1,2 (K > 0: real "
              "fine-tuning runs, only for candidates within the latency budget).")  # fmt: skip
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A local backbone checkpoint (with a single --backbones).")  # fmt: skip
@click.option("--budget-minutes", type=float, default=None,
              help="Stop cleanly after this long with the best so far.")  # fmt: skip
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--iterations", type=int, default=500, show_default=True,
              help="Latency samples per architecture (in rounds of 20).")  # fmt: skip
@click.option("--max-accuracy-drop", type=float, default=1.0, show_default=True,
              help="INT8 candidates: the guard's budget in val top-1 points.")  # fmt: skip
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--on", "on", default=None,
              help="Time the architectures on this lab device (see `edgetl devices`).")  # fmt: skip
@lab_option
@click.option("--force", is_flag=True, help="Start again instead of resuming search.json.")
@click.option("--json", "as_json", is_flag=True, help="Print search.json's content.")
@handle_errors
def search(
    backbones: str,
    sizes: str,
    heads: str,
    precisions: str | None,
    unfreeze: str,
    max_latency: str,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Find the most accurate model for DATA that meets --max-latency (and --max-size) on
    --target. Latency is measured per architecture on the target's runtime before anything
    is trained (over budget: never trained); heads train on cached features; INT8 goes
    through the accuracy guard where it could still be on the front. Every choice is made
    on val; test is reported for the chosen model (and the front, marked not chosen on).
    SEARCH/chosen is the chosen artifact, ready for `edgetl bench`; a re-run resumes.
    """
    from edgetl.train.stack import check_host_stack

    check_host_stack()
    from edgetl.stages.search.report import print_search, write_plot
    from edgetl.stages.search.search import SearchOptions
    from edgetl.stages.search.search import search as run_search
    from edgetl.stages.search.space import split_list

    def numbers(text: str, option: str) -> list[int]:
        try:
            return [int(item) for item in split_list(text, option)]
        except ValueError as exc:
            message = f"{text!r}: give whole numbers like 96,128"
            raise click.BadParameter(message, param_hint=option) from exc

    kwargs["lab"] = kwargs.pop("lab_file")
    kwargs["max_latency_ms"], kwargs["max_latency_x"] = latency_budget(max_latency)
    options = SearchOptions(
        backbones=split_list(backbones, "--backbones"), sizes=numbers(sizes, "--sizes"),
        unfreeze=numbers(unfreeze, "--unfreeze"),
        heads=split_list(heads, "--heads"),
        precisions=split_list(precisions, "--precisions") if precisions else None,
        **kwargs,
    )  # fmt: skip
    result = run_search(options, make_console())
    write_plot(result.state, result.out / "front.png")
    emit(result.state.to_dict(), as_json, lambda: print_search(stdout_console(), result))
    check(result)


def latency_budget(text: str) -> tuple[float | None, float | None]:
    """--max-latency: (ms, None) for "5", (None, 1.2) for "1.2x"."""
    relative = text.strip().lower().endswith("x")
    try:
        value = float(text.strip().rstrip("xX"))
    except ValueError as exc:
        message = f"{text!r}: give milliseconds (5) or a multiple of --reference's (1.2x)"
        raise click.BadParameter(message, param_hint="--max-latency") from exc
    return (None, value) if relative else (value, None)
