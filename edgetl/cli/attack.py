"""`edgetl attack`: craft the teacher-transfer attack file for `bench --robustness`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.declared import options_of
from edgetl.core.ui import stdout_console, table
from edgetl.stages.attack import AttackOptions


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@options_of(AttackOptions)
@handle_errors
def attack(**kwargs: Any) -> None:
    """Craft adversarial copies of ARTIFACT's reference images from public information only.

    The attacker uses the pretrained backbone's public weights and a head of their own
    fitted on public features; never your head or fine-tuned weights. Score the file on
    any device with `edgetl bench ART --robustness --attack FILE`.
    """
    from edgetl.stages.attack import attack as run_attack

    crafted = run_attack(AttackOptions(**kwargs))
    info = crafted.info
    rows = [["backbone (public)", info.backbone], ["method", info.method],
            ["attacker's head", info.surrogate],
            ["images", f"{crafted.images.shape[1]} x {len(crafted.epsilons)} epsilons"],
            ["file", f"{info.file} (sha256 {info.sha256[:12]})"]]  # fmt: skip
    if info.scratch:
        scratch = ", ".join(f"{k}: {v:.1%}" for k, v in info.scratch.items())
        rows.append(["a model from scratch", scratch])
    stdout_console().print(table("edgetl attack", ["", ""], rows))
