"""`edgetl finetune`: train a head on a frozen backbone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import F, handle_errors, main
from edgetl.cli.output import emit, print_run
from edgetl.core.constants import DEFAULT_BACKBONE
from edgetl.core.errors import EdgetlError
from edgetl.core.ui import make_console


class UnfreezeType(click.ParamType):
    """--unfreeze: a number of stages, or auto."""

    name = "K|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value == "auto":
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r}: give a number of stages (0, 1, 2, ...) or auto", param, ctx)


def finetune_options(func: F) -> F:
    """finetune's options, applied in order. Over 60 lines, and kept so: it is one flat list
    of declarations (each option's name, type, default and help), not logic."""
    options = [
        click.option(
            "--backbone",
            default=DEFAULT_BACKBONE,
            show_default=True,
            help="Registry or timm model name.",
        ),
        click.option(
            "--weights",
            type=click.Path(path_type=Path),
            default=None,
            help="Local backbone checkpoint (.safetensors or state-dict .pth).",
        ),
        click.option("--epochs", type=int, default=30, show_default=True),
        click.option("--lr", type=float, default=1e-3, show_default=True),
        click.option("--batch-size", type=int, default=64, show_default=True),
        click.option(
            "--image-size",
            type=int,
            default=None,
            help="Input size; default from the backbone's pretrained config.",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default="auto",
            show_default=True,
        ),
        click.option(
            "--unfreeze",
            type=UnfreezeType(),
            default="0",
            show_default=True,
            help="Also train the last K backbone stages (head warm-started on cached "
            "features), or auto: the probe, then 1, then 2 stages, each scored on val; the "
            "smallest K within --unfreeze-tolerance of the best is kept.",
        ),
        click.option(
            "--scratch-baseline",
            is_flag=True,
            help="Also train a small CNN from scratch on the same split: far above the linear "
            "probe on val, it is reported as a domain gap / negative transfer.",
        ),
        click.option(
            "--unfreeze-tolerance",
            type=float,
            default=0.5,
            show_default=True,
            help="With --unfreeze auto: val top-1 points a smaller K may be below the best.",
        ),
        click.option(
            "--hidden",
            type=int,
            default=0,
            show_default=True,
            help="Hidden units of an MLP head; 0 for a linear head.",
        ),
        click.option(
            "--val-fraction",
            type=float,
            default=0.2,
            show_default=True,
            help="Share of each class held out for val (choices: early stopping, INT8 "
            "guard) when DATA has no val/ folder.",
        ),
        click.option(
            "--test-fraction",
            type=float,
            default=0.2,
            show_default=True,
            help="Share of each class held out for test (reported only) when DATA has no "
            "test/ folder.",
        ),
        click.option(
            "--patience",
            type=int,
            default=5,
            show_default=True,
            help="Early stopping: epochs without val-loss gain.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Feature cache directory [default: ~/.cache/edgetl/features].",
        ),
        click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache."),
        click.option(
            "--workers",
            type=int,
            default=None,
            help="Threads decoding images ahead of feature extraction; 0 decodes in line "
            "[default: the cores available].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.option("--data", required=True, help="ImageFolder directory, or 'digits'.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory.")
@finetune_options
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the run metadata as JSON.")
@click.option(
    "--nproc",
    type=int,
    default=1,
    show_default=True,
    help="Processes extracting features, started with torchrun (one per GPU on a GPU host); "
    "across machines, run `torchrun ... -m edgetl finetune` yourself.",
)
@handle_errors
def finetune(
    data: str, out: Path, as_json: bool, no_cache: bool, nproc: int, **kwargs: Any
) -> None:
    """Train a new head for DATA's classes on a frozen backbone."""
    from edgetl.train.stack import check_host_stack

    check_host_stack()
    from edgetl.stages.finetune import FinetuneOptions
    from edgetl.stages.finetune import finetune as run_finetune

    if nproc < 1:
        raise EdgetlError(f"--nproc {nproc}: must be at least 1")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(_launch(nproc))
    console = make_console()
    info = run_finetune(
        FinetuneOptions(data=data, out=out, use_cache=not no_cache, **kwargs), console
    )
    if info is not None:  # None: a rank other than 0 of a torchrun launch
        emit(info.to_dict(), as_json, lambda: print_run(info, out))


def _launch(nproc: int) -> int:
    """This very command under torchrun, `nproc` ranks on this machine; its exit status.

    The arguments go to torchrun as a list (no shell), rebuilt from what click parsed."""
    context = click.get_current_context()
    args = ["finetune"]
    for param in context.command.params:
        value = context.params.get(param.name or "")
        if param.name == "nproc" or value is None or value is False:
            continue
        flag = param.opts[0]
        args += [flag] if value is True else [flag, str(value)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(nproc), "-m", "edgetl", *args]
    return subprocess.run(command, check=False).returncode
