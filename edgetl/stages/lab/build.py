"""`edgetl build BUNDLE --on NAME[,NAME...]`: the bundle's TensorRT engine built on each
device (where TensorRT is), its engine record read back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.stages.lab.bench import checked, read_engine_record
from edgetl.stages.lab.labfile import find_lab, read_lab
from edgetl.stages.lab.remote import Remote
from edgetl.stages.lab.ssh import DeviceFault, multiplexed
from edgetl.stages.lab.verdicts import PerDevice


@dataclass
class DeviceBuild:
    device: str
    status: str  # ok / failed
    reason: str = ""
    engine: dict[str, Any] = field(default_factory=dict)  # the engine record (engine.json)
    seconds: float = 0.0

    def line(self) -> str:
        if self.status != "ok":
            return f"{self.device}: failed: {self.reason}"
        record = self.engine
        placed = f"DLA {record.get('dla_layers')} / GPU {record.get('gpu_layers')}"
        return f"{self.device}: engine built with TensorRT {record.get('tensorrt')}, {placed}"


LabBuild = PerDevice[DeviceBuild]


def build_on(bundle: Path, options: list[str], on: str, lab_file: Path | None) -> LabBuild:
    """Build on each device named by `on`; `options` are `edgetl build`'s (--dla-core ...)."""
    lab = read_lab(find_lab(lab_file))
    devices = lab.select(on)
    manifest = checked(bundle)
    if manifest.backend != "tensorrt":
        raise EdgetlError(f"{bundle}: a {manifest.backend} artifact; only TensorRT bundles build")
    runs = []
    with multiplexed(lab.multiplex) as control:
        for name, device in devices.items():
            started = time.perf_counter()
            remote = Remote(name, device, lab, control)
            try:
                run = DeviceBuild(name, "ok", engine=_build(remote, bundle, manifest.digest,
                                                            options))  # fmt: skip
            except DeviceFault as fault:
                run = DeviceBuild(name, "failed", str(fault))
            run.seconds = round(time.perf_counter() - started, 2)
            say(escape(run.line()))
            runs.append(run)
    return LabBuild(runs)


def _build(remote: Remote, bundle: Path, digest: str, options: list[str]) -> dict[str, Any]:
    facts = remote.prepare({"tensorrt"})
    if "tensorrt" not in facts.runtimes:
        raise DeviceFault(
            f"{remote.python} cannot import TensorRT: on a Jetson, JetPack's python3-libnvinfer "
            "(a managed venv sees it: system_site_packages = true)"
        )
    there, _ = remote.put(bundle, digest)
    remote.edgetl(["build", there, *options])
    return read_engine_record(remote, there).to_dict()
