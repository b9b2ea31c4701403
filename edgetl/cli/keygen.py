"""`edgetl keygen`: an ed25519 key pair for signing artifacts."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli.app import handle_errors, main


@main.command()
@click.argument("key", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
@handle_errors
def keygen(key: Path, force: bool) -> None:
    """Make an ed25519 key pair for signing artifacts: KEY (private, mode 0600) and KEY.pub.

    Sign with `edgetl export RUN ... --sign KEY`; devices refuse anything else with
    `--trust KEY.pub` (bench, predict, build, compare) or `edgetl.load(ART, trust=...)`.
    Keys from `ssh-keygen -t ed25519` or `openssl genpkey -algorithm ed25519` work too.
    """
    from edgetl.core.artifact.signing import generate

    public, identity = generate(key, force)
    click.echo(f"private key: {key} (keep it secret)\npublic key:  {public} ({identity})")
