"""`edgetl probe-latency DIR...` (hidden): time latency probes where this edgetl runs; what
`edgetl search --on DEVICE` runs on the device."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgetl.cli.app import handle_errors, main


@main.command("probe-latency", hidden=True)
@click.argument("probes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--iterations", type=int, default=100, show_default=True)
@handle_errors
def probe_latency(probes: tuple[Path, ...], iterations: int) -> None:
    """Batch-1 p50/p90 of each probe folder (compiled model + probe.json), as JSON."""
    from edgetl.backends.probe import time_probes

    click.echo(json.dumps(time_probes(list(probes), iterations)))
