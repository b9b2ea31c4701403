"""`edgetl build`: on the device, a bundle's TensorRT engine."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli.app import handle_errors, main, trust_option
from edgetl.cli.devices import lab_option


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--dla-core", type=int, default=None, help="DLA core [default: the profile's].")
@click.option(
    "--workspace", "workspace_mb", type=int, default=None, help="Builder workspace in MB."
)
@trust_option
@click.option(
    "--on",
    "on",
    default=None,
    help="Build on the lab's devices over ssh: NAME[,NAME...] or all (see `edgetl devices`).",
)
@lab_option
@handle_errors
def build(
    bundle: Path,
    dla_core: int | None,
    workspace_mb: int | None,
    trust: tuple[Path, ...],
    on: str | None,
    lab_file: Path | None,
) -> None:
    """On the device: build BUNDLE's TensorRT engine and check it on the reference set.

    With --on, on each lab device: the bundle copied there (once), then this command there."""
    from edgetl.backends.tensorrt.build import BuildOptions
    from edgetl.backends.tensorrt.build import build as run_build

    if on is not None:
        _build_on(bundle, dla_core, workspace_mb, trust, on, lab_file)
        return
    options = BuildOptions(bundle, dla_core, workspace_mb, trust)
    record = run_build(options)  # options.bundle: an archive's unpacked dir
    click.echo(
        f"engine: {options.bundle / 'model.engine'} ({record.tensorrt}, "
        f"{record.device.gpu or record.device.module})"
    )


def _build_on(
    bundle: Path,
    dla_core: int | None,
    workspace_mb: int | None,
    trust: tuple[Path, ...],
    on: str,
    lab_file: Path | None,
) -> None:
    from edgetl.core.errors import EdgetlError
    from edgetl.core.verdict import check
    from edgetl.stages.lab.build import build_on

    if trust:
        raise EdgetlError("--trust with --on: check signatures on the device (not yet relayed)")
    options = [] if dla_core is None else ["--dla-core", str(dla_core)]
    options += [] if workspace_mb is None else ["--workspace", str(workspace_mb)]
    check(build_on(bundle, options, on, lab_file))
