"""The lab file (devices.toml): which devices there are, how to reach them, what they run.

Found by `--lab FILE`, else $EDGETL_LAB, else ./devices.toml. Its shape is a contract (users'
CI scripts rely on it); an unknown key is an error naming the key and the device:

    ssh_config = "lab/ssh_config"   # optional: `ssh -F` for the whole lab
    multiplex = true                # optional: one connection per device (ControlMaster)
    [devices.orin1]
    ssh = "ubuntu@orin1.lab"        # or a ~/.ssh/config alias
    port = 22                       # optional
    target = "jetson-orin-nano"     # the target profile the device runs
    python = "~/edgetl/bin/python"  # optional: an env with edgetl's device side; absent:
                                    # edgetl makes WORKDIR/venv from its own wheel
    workdir = "~/edgetl-lab"        # optional: artifacts, reports and the managed venv
    setup = [["sudo", "jetson_clocks"]]  # optional: commands run before each bench
    ssh_config = "lab/orin1.ssh"    # optional: this device's own `ssh -F`
    emulated = false                # optional: true for a qemu device (latency meaningless)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.core.datafiles import tomllib
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields

LAB_FILE = "devices.toml"
LAB_ENV = "EDGETL_LAB"


@dataclass(frozen=True)
class Device:
    ssh: str  # user@host, or a Host alias of the lab's (or the user's) ssh config
    target: str  # the target profile this device runs (checked against artifacts)
    port: int | None = None
    python: str | None = None  # an interpreter with edgetl there; None: WORKDIR/venv, managed
    workdir: str = "~/edgetl-lab"
    base_python: str = "python3"  # what the managed venv is made from (needs venv)
    system_site_packages: bool = True  # the venv sees the system's TensorRT / OpenVINO
    pip: list[str] = field(default_factory=list)  # options for its pip, e.g. --no-index
    setup: list[list[str]] = field(default_factory=list)  # argv lists run before a bench
    connect_timeout_s: float = 10.0
    timeout_s: float = 1800.0  # one command (a bench, an install) at most
    # `ssh -F` for this device alone (relative to the lab file), else the lab's ssh_config
    ssh_config: str | None = None
    # An emulated CPU (tools/arm_device.py: qemu-user): its answers count, its latency does
    # not; reports show it as emulated, never beside a real device's
    emulated: bool = False


@dataclass(frozen=True)
class Lab:
    path: Path
    devices: dict[str, Device]
    ssh_config: Path | None = None
    multiplex: bool = True  # one ssh connection per device for a whole command

    def ssh_config_of(self, device: Device) -> Path | None:
        """The device's own ssh config, else the lab's."""
        return _config(self.path, "ssh_config", device.ssh_config) or self.ssh_config

    def select(self, names: str) -> dict[str, Device]:
        """`--on NAME[,NAME...]` or `--on all`: the devices asked for, in the file's order."""
        if names.strip() == "all":
            return dict(self.devices)
        wanted = [name.strip() for name in names.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in self.devices]
        if unknown or not wanted:
            raise EdgetlError(
                f"--on {names}: {', '.join(unknown) or 'no device named'} not in {self.path} "
                f"(devices: {', '.join(self.devices) or 'none'}); or give --on all"
            )
        return {name: self.devices[name] for name in dict.fromkeys(wanted)}


@dataclass(frozen=True)
class _LabFile:
    devices: dict[str, Device]
    ssh_config: str | None = None
    multiplex: bool = True


def find_lab(option: Path | None) -> Path:
    """--lab, else $EDGETL_LAB, else ./devices.toml; an error saying which was looked for."""
    if option is not None:
        where, path = "--lab", option
    elif os.environ.get(LAB_ENV):
        where, path = f"${LAB_ENV}", Path(os.environ[LAB_ENV])
    else:
        where, path = f"./{LAB_FILE}", Path(LAB_FILE)
    if not path.is_file():
        raise EdgetlError(
            f"{where} {path}: no lab file there. Write a {LAB_FILE} with a [devices.NAME] table "
            f"per device (ssh, target), or name one with --lab FILE or ${LAB_ENV}"
        )
    return path


def read_lab(path: Path) -> Lab:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EdgetlError(f"{path}: not a readable TOML lab file ({exc})") from exc
    source = Source(str(path), remedy=". See `edgetl devices --help` for the lab file's keys")
    parsed = read_fields(_LabFile, data, source)
    for name, device in parsed.devices.items():
        _check_device(path, name, device)
    config = _config(path, "ssh_config", parsed.ssh_config)
    for name, device in parsed.devices.items():
        _config(path, f"devices.{name}.ssh_config", device.ssh_config)
    return Lab(path, parsed.devices, config, parsed.multiplex)


def _config(path: Path, key: str, value: str | None) -> Path | None:
    """An ssh config named in the lab file, relative to it; an error when it is missing."""
    if value is None:
        return None
    config = (path.parent / Path(value).expanduser()).resolve()
    if not config.is_file():
        raise EdgetlError(f"{path}: {key} {value}: no such file ({config})")
    return config


def _check_device(path: Path, name: str, device: Device) -> None:
    where = f"{path}: devices.{name}"
    if not device.ssh or device.ssh.startswith("-") or any(c.isspace() for c in device.ssh):
        raise EdgetlError(f"{where}.ssh {device.ssh!r}: give user@host or an ssh config alias")
    if device.port is not None and not 0 < device.port < 65536:
        raise EdgetlError(f"{where}.port {device.port}: give a TCP port, 1..65535")
    if not device.workdir:
        raise EdgetlError(f"{where}.workdir: give a directory on the device")
    for index, command in enumerate(device.setup):
        if not command:
            raise EdgetlError(f"{where}.setup[{index}]: an empty command; give [program, args]")
    if device.connect_timeout_s <= 0 or device.timeout_s <= 0:
        raise EdgetlError(f"{where}: timeouts must be positive seconds")
