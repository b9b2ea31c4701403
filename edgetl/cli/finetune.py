"""`edgetl finetune`: train a head on a frozen backbone."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.declared import options_of
from edgetl.cli.detect_output import print_detect_run
from edgetl.cli.output import emit, print_run
from edgetl.core.errors import EdgetlError
from edgetl.stages.finetune.options import FinetuneOptions


@main.command()
@options_of(FinetuneOptions)
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
def finetune(as_json: bool, nproc: int, **kwargs: Any) -> None:
    """Train a new head for DATA's classes (or a detector for its boxes) on a frozen backbone."""
    from edgetl.train.stack import check_host_stack

    check_host_stack()
    from edgetl.stages.detect.run import DetectRunInfo
    from edgetl.stages.finetune import finetune as run_finetune

    if nproc < 1:
        raise EdgetlError(f"--nproc {nproc}: must be at least 1")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(_launch(nproc))
    opts = FinetuneOptions(**kwargs)
    info = run_finetune(opts)
    if isinstance(info, DetectRunInfo):
        emit(info.to_dict(), as_json, lambda: print_detect_run(info, opts.out))
    elif info is not None:  # None: a rank other than 0 of a torchrun launch
        emit(info.to_dict(), as_json, lambda: print_run(info, opts.out))


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
