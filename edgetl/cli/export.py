"""`edgetl export`: a run exported for a target, checked, with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.declared import options_of
from edgetl.cli.detect_output import print_detect_export
from edgetl.cli.output import emit, guard_tables, print_quantization
from edgetl.core.events import say
from edgetl.core.ui import heartbeat
from edgetl.core.verdict import check
from edgetl.stages.export.options import ExportOptions


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@options_of(ExportOptions)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@handle_errors
def export(run: Path, as_json: bool, **kwargs: Any) -> None:
    """Export RUN for a target: ONNX, backend artifact, parity check, manifest.

    With --precision int8 the model is calibrated, quantized and checked by the accuracy
    guard: unless val shows, at --confidence, that top-1 drops at most --max-accuracy-drop
    (an exact bound from the images INT8 and FP32 answer differently; --rule), the head is
    re-fitted on the quantized backbone's features and the most sensitive layers are kept
    in float until it does; otherwise it exits 1 with what was tried and writes nothing.
    """
    from edgetl.backends.profiles import load_target

    # Cheap checks first: an unsupported --precision was refused only after ~3-7 s of
    # importing the PyTorch stack.
    profile = load_target(kwargs["target"])
    precision = profile.check_precision(kwargs["precision"])
    say(f"export {run} for {profile.name} ({precision})")
    with heartbeat("loading PyTorch, NNCF and the runtimes"):
        from edgetl.train.stack import check_host_stack

        check_host_stack()
        from edgetl.stages.detect.export import DetectExportResult
        from edgetl.stages.export import export as run_export

    result = run_export(ExportOptions(run=run, **kwargs))
    if isinstance(result, DetectExportResult):
        emit(result.to_dict(), as_json, lambda: print_detect_export(result))
        check(result)
        return
    if result.manifest is not None:
        manifest = result.manifest
        emit(result.to_dict(), as_json, lambda: print_quantization(manifest))
    else:
        if result.guard is not None:
            for item in guard_tables(result.guard):
                say(item)
        if as_json:
            emit(result.to_dict(), as_json, lambda: None)
    check(result)
