"""`edgetl export`: a run exported for a target, checked, with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.output import emit, guard_tables, print_quantization
from edgetl.core.evidence import DEFAULT_RULE, RULES
from edgetl.core.ui import heartbeat, make_console
from edgetl.core.verdict import check


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--target", required=True, help="Target profile name (see `edgetl targets`) or .toml."
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default=None,
    help="Default: the target's.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Artifact directory [default: RUN/export/TARGET-PRECISION].",
)
@click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch dimension.")
@click.option(
    "--parity-samples",
    type=int,
    default=200,
    show_default=True,
    help="Validation images used for the parity check.",
)
@click.option(
    "--reference-samples",
    type=int,
    default=200,
    show_default=True,
    help="Test images stored in the artifact (reference set) for `edgetl bench ARTIFACT`.",
)
@click.option(
    "--recipe",
    default=None,
    help="INT8: calibration recipe name (calibration/*.toml) or .toml file "
    "[default: the target's].",
)
@click.option(
    "--calib-data",
    type=click.Path(path_type=Path),
    default=None,
    help="INT8: directory of calibration images (flat or class folders) or a .npy of "
    "preprocessed tensors [default: a stratified sample of the run's training split].",
)
@click.option(
    "--calib-samples",
    type=int,
    default=None,
    help="INT8: number of calibration images [default: the recipe's].",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="INT8: most top-1 points the INT8 model may lose against FP32, shown on validation "
    "at --confidence.",
)
@click.option(
    "--confidence",
    type=float,
    default=None,
    help="INT8: confidence of the guard's upper bound on the drop; a candidate is kept only "
    "when that bound is within --max-accuracy-drop [default: 0.9].",
)
@click.option(
    "--rule",
    type=click.Choice(list(RULES)),
    default=DEFAULT_RULE,
    show_default=True,
    help="INT8: how the guard decides. paired-bound: val's exact bound on the drop; "
    "paired-bound+flips: also the flips against FP32 on unlabelled training images "
    "(stricter; docs/guard.md).",
)
@click.option(
    "--archive",
    is_flag=True,
    help="Also write ARTIFACT.tar.gz (e.g. a bundle to copy to a device).",
)
@click.option(
    "--sign",
    type=click.Path(path_type=Path),
    default=None,
    help="Sign the artifact with this ed25519 private key (see `edgetl keygen`); devices "
    "check it with --trust.",
)
@click.option("--force", is_flag=True, help="Replace an existing artifact directory.")
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
    console = make_console()
    console.print(f"export {run} for {profile.name} ({precision})")
    with heartbeat(console, "loading PyTorch, NNCF and the runtimes"):
        from edgetl.train.stack import check_host_stack

        check_host_stack()
        from edgetl.stages.export import ExportOptions
        from edgetl.stages.export import export as run_export

    result = run_export(ExportOptions(run=run, **kwargs), console)
    if result.manifest is not None:
        manifest = result.manifest
        emit(result.to_dict(), as_json, lambda: print_quantization(manifest))
    else:
        if result.guard is not None:
            for item in guard_tables(result.guard):
                console.print(item)
        if as_json:
            emit(result.to_dict(), as_json, lambda: None)
    check(result)
