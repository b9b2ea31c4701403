"""`edgetl build`: on the device, a bundle's TensorRT engine."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli.app import handle_errors, main, trust_option
from edgetl.core.ui import make_console


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--dla-core", type=int, default=None, help="DLA core [default: the profile's].")
@click.option(
    "--workspace", "workspace_mb", type=int, default=None, help="Builder workspace in MB."
)
@trust_option
@handle_errors
def build(
    bundle: Path, dla_core: int | None, workspace_mb: int | None, trust: tuple[Path, ...]
) -> None:
    """On the device: build BUNDLE's TensorRT engine and check it on the reference set."""
    from edgetl.backends.tensorrt.build import BuildOptions
    from edgetl.backends.tensorrt.build import build as run_build

    options = BuildOptions(bundle, dla_core, workspace_mb, trust)
    record = run_build(options, make_console())  # options.bundle: an archive's unpacked dir
    device = record["device"]
    click.echo(
        f"engine: {options.bundle / 'model.engine'} ({record['tensorrt']}, "
        f"{device['gpu'] or device['module']})"
    )
