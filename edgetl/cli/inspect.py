"""`edgetl inspect ART`: an artifact's target, precision and accuracy, and for INT8 the guard's
sensitivity report (every quantizable layer: its final precision and its val metric alone in
float), the ladder's path, and with --plot a PNG of it."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.output import emit


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Write the sensitivity report as a PNG here.")  # fmt: skip
@click.option("--all", "show_all", is_flag=True, help="Every layer (default: the first 25).")
@click.option("--json", "as_json", is_flag=True, help="Print sensitivity.json's content.")
@handle_errors
def inspect(artifact: Path, plot: Path | None, show_all: bool, as_json: bool) -> None:
    """Show ARTIFACT: target, precision, val/test accuracy; which ops its runtime runs where
    and in which precision, loaded here (ONNX Runtime's execution providers and fused
    kernels, OpenVINO's runtime graph, ExecuTorch's XNNPACK delegation, a TensorRT engine's
    DLA/GPU layers from its build record); for INT8 the sensitivity report export wrote
    (`export --sensitivity` ranks every layer even where the guard stopped at plain INT8)."""
    from edgetl.cli.inspect_output import print_inspect
    from edgetl.core.errors import EdgetlError
    from edgetl.stages.inspect import op_placement, read_artifact, write_plot

    manifest, report = read_artifact(artifact)
    placement = op_placement(artifact, manifest)
    if plot is not None:
        if report is None:
            raise EdgetlError(f"{artifact}: no sensitivity report (not INT8); nothing to plot")
        write_plot(report, plot)
    data = {"manifest": manifest, "placement": placement,
            "sensitivity": report.to_dict() if report else None}  # fmt: skip
    emit(data, as_json, lambda: print_inspect(artifact, manifest, report, show_all, placement))
    if plot is not None and not as_json:
        click.echo(f"plot: {plot}")
