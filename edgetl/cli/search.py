"""`edgetl search`: the most accurate model within a latency and size budget on a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.declared import options_of
from edgetl.cli.devices import lab_option
from edgetl.cli.output import emit, print_search
from edgetl.core.ui import stdout_console
from edgetl.core.verdict import check
from edgetl.stages.search.options import SearchOptions

FIRST = ("data", "target", "out")  # then --max-latency, then the rest


@main.command()
@options_of(SearchOptions, only=FIRST)
@click.option(
    "--max-latency",
    "max_latency",
    required=True,
    metavar="MS|Nx",
    help="Batch-1 latency budget on the target's runtime: in ms (5), or a multiple "
    "of --reference's latency timed in the same rounds as the candidates (1.2x).",
)
@options_of(SearchOptions, skip=FIRST)
@lab_option
@click.option("--json", "as_json", is_flag=True, help="Print search.json's content.")
@handle_errors
def search(max_latency: str, lab_file: Path | None, as_json: bool, **kwargs: Any) -> None:
    """Find the most accurate model for DATA that meets --max-latency (and --max-size) on
    --target. Latency is measured per architecture on the target's runtime before anything
    is trained (over budget: never trained); heads train on cached features; INT8 goes
    through the accuracy guard where it could still be on the front. Every choice is made
    on val; test is reported for the chosen model (and the front, marked not chosen on).
    SEARCH/chosen is the chosen artifact, ready for `edgetl bench`; a re-run resumes.

    On a YOLO or COCO folder it searches detectors: every backbone x size trained, each
    precision exported under the mAP guard, the artifacts timed with NMS; val mAP50-95
    chooses (docs/detection.md).
    """
    from edgetl.train.stack import check_host_stack

    check_host_stack()
    from edgetl.stages.search.report import write_plot
    from edgetl.stages.search.search import search as run_search

    max_latency_ms, max_latency_x = latency_budget(max_latency)
    options = SearchOptions(max_latency_ms=max_latency_ms, max_latency_x=max_latency_x,
                            lab=lab_file, **kwargs)  # fmt: skip
    if _detection(options.data):
        from edgetl.cli.detect_output import print_detect_search
        from edgetl.stages.detect.search import search_detectors

        found = search_detectors(options)
        emit(found.to_dict(), as_json, lambda: print_detect_search(found, options.out))
        check(found)
        return
    result = run_search(options)
    write_plot(result.state, result.out / "front.png")
    emit(result.state.to_dict(), as_json, lambda: print_search(stdout_console(), result))
    check(result)


def _detection(data: str) -> bool:
    """A YOLO or COCO folder: the detector's search (stages/detect/search.py)."""
    from edgetl.core.data.detection import layout

    return data != "digits" and layout(Path(data)) is not None


def latency_budget(text: str) -> tuple[float | None, float | None]:
    """--max-latency: (ms, None) for "5", (None, 1.2) for "1.2x"."""
    relative = text.strip().lower().endswith("x")
    try:
        value = float(text.strip().rstrip("xX"))
    except ValueError as exc:
        message = f"{text!r}: give milliseconds (5) or a multiple of --reference's (1.2x)"
        raise click.BadParameter(message, param_hint="--max-latency") from exc
    return (None, value) if relative else (value, None)
