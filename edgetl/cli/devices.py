"""`edgetl devices`: the lab's devices, each checked over ssh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.output import emit
from edgetl.core.errors import CheckFailed
from edgetl.core.ui import stdout_console, table

lab_option = click.option(
    "--lab",
    "lab_file",
    type=click.Path(path_type=Path),
    default=None,
    help="The lab file [default: $EDGETL_LAB, else ./devices.toml].",
)


def on_option(help: str) -> Any:
    """--on NAME[,NAME...]: where a command runs in the lab (`help` says what it does there)."""
    return click.option("--on", "on", default=None, help=help)


@main.command()
@lab_option
@click.option("--json", "as_json", is_flag=True, help="Print the devices' facts as JSON.")
@handle_errors
def devices(lab_file: Path | None, as_json: bool) -> None:
    """List the lab's devices and check each over ssh: reachable, architecture, OS / L4T,
    Python, edgetl's device side there, runtimes (TensorRT, OpenVINO, ONNX Runtime), free
    disk. Exit 1 when a device cannot be reached.

    \b
    The lab file (devices.toml):
      ssh_config = "lab/ssh_config"    # optional, passed as ssh -F
      multiplex = true                 # optional: one ssh connection per device
      [devices.orin1]
      ssh = "ubuntu@orin1.lab"         # or a ~/.ssh/config alias
      target = "jetson-orin-nano"      # the profile the device runs
      port = 22                        # optional
      python = "~/edgetl/bin/python"   # optional; absent: edgetl makes WORKDIR/venv
      workdir = "~/edgetl-lab"         # optional
      base_python = "python3"          # optional: what the managed venv is made from
      pip = ["--no-index", "--find-links", "/opt/wheels"]  # optional pip options
      setup = [["sudo", "jetson_clocks"]]  # optional: run before each bench
      ssh_config = "lab/pi.ssh"        # optional: this device's own ssh -F
      emulated = true                  # optional: a qemu device (tools/arm_device.py);
                                       # its latency is shown as emulated, never compared
    """
    from edgetl.stages.lab.labfile import find_lab, read_lab
    from edgetl.stages.lab.remote import Remote
    from edgetl.stages.lab.ssh import multiplexed

    lab = read_lab(find_lab(lab_file))
    with multiplexed(lab.multiplex) as control:
        facts = [Remote(name, d, lab, control).probe() for name, d in lab.devices.items()]
    emit(
        {"lab": str(lab.path), "devices": [f.to_dict() for f in facts]},
        as_json,
        lambda: stdout_console().print(_table(str(lab.path), facts)),
    )
    down = [f"{f.name}: {f.reason}" for f in facts if not f.reachable]
    if down:
        raise CheckFailed("; ".join(down))


COLUMNS = ["device", "target", "arch", "OS / L4T", "python", "edgetl", "runtimes", "free GB",
           "status"]  # fmt: skip


def _table(lab: str, facts: list[Any]) -> Any:
    """One row a device: what `probe()` found there."""
    rows = [
        [
            f.name,
            f.target,
            f"{f.arch or '-'} (emulated)" if f.emulated else f.arch,
            f"{f.os} / L4T {f.l4t}" if f.l4t else f.os,
            f.python,
            f.edgetl or "-",
            ", ".join(f"{k} {v}" for k, v in sorted(f.runtimes.items())) or "-",
            "-" if f.free_gb is None else f"{f.free_gb:g}",
            f.reason or "ok",
        ]
        for f in facts
    ]
    return table(f"lab {lab}", COLUMNS, rows)
