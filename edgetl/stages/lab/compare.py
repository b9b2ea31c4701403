"""`edgetl compare BASE CAND --on NAME[,NAME...]`: the interleaved bootstrap comparison run
on each device (both artifacts in fresh sessions there), the verdict read back here."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rich.markup import escape

from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.fields import Source, read_fields
from edgetl.core.measures.regression import LatencyVerdict
from edgetl.core.options import argv
from edgetl.core.records import DeviceRun, Manifest
from edgetl.core.records.detector import DetectorManifest
from edgetl.stages.bench.compare import Comparison, check_options
from edgetl.stages.bench.options import CompareOptions
from edgetl.stages.lab.bench import checked_any, device_data, local_data_folder, place
from edgetl.stages.lab.labfile import find_lab, read_lab
from edgetl.stages.lab.remote import Remote
from edgetl.stages.lab.ssh import DeviceFault, RemotePath, multiplexed
from edgetl.stages.lab.verdicts import PerDevice


@dataclass
class DeviceComparison:
    device: str
    status: str  # ok / regressed / failed
    reason: str = ""
    comparison: Comparison | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        found = None if self.comparison is None else self.comparison.to_dict()
        return {"device": self.device, "status": self.status, "reason": self.reason,
                "comparison": found, "seconds": self.seconds}  # fmt: skip

    def line(self) -> str:
        if self.comparison is None:
            return f"{self.device}: failed: {self.reason}"
        return f"{self.device}: {self.comparison.line()}"


LabComparison = PerDevice[DeviceComparison]


def compare_on(opts: CompareOptions, on: str, lab_file: Path | None) -> LabComparison:
    lab = read_lab(find_lab(lab_file))
    devices = lab.select(on)
    check_options(opts)
    if not (opts.base / "manifest.json").is_file():
        raise EdgetlError(f"{opts.base}: with --on, BASE is an artifact directory (not a report)")
    pair = [opts.base, opts.candidate]
    manifests = [checked_any(path) for path in pair]  # a pair of classifiers or detectors
    local_data = local_data_folder(opts.data)
    with multiplexed(lab.multiplex) as control:
        runs = [
            _compare_device(Remote(name, device, lab, control), pair, manifests, local_data,
                            opts)
            for name, device in devices.items()
        ]  # fmt: skip
    return LabComparison(runs)


def _compare_device(
    remote: Remote,
    pair: list[Path],
    manifests: list[Manifest | DetectorManifest],
    local_data: Path | None,
    opts: CompareOptions,
) -> DeviceComparison:
    name, device = remote.name, remote.device
    say(f"[bold]{escape(name)}[/] ({escape(device.ssh)}, {device.target}) ...")
    started = time.perf_counter()
    try:
        there = place(remote, pair, manifests, DeviceRun(name, device.target, "ok"))
        data = device_data(remote, opts.data, local_data)
        remote.setup()
        result = _compare_there(remote, there, data, opts)
        run = DeviceComparison(name, "ok" if result.passed else "regressed", "", result)
    except DeviceFault as fault:
        run = DeviceComparison(name, "failed", str(fault))
    run.seconds = round(time.perf_counter() - started, 2)
    say(f"  {escape(run.line())}")
    return run


def _compare_there(
    remote: Remote, pair: list[RemotePath], data: str | None, opts: CompareOptions
) -> Comparison:
    args: list[str] = ["compare", *pair, "--json", *argv(opts)]
    if data is not None:
        args += ["--data", data]
    # exit 1: a regression, its verdict printed all the same
    return _verdict(remote.edgetl(args, (0, 1)), opts.max_accuracy_drop, remote.name)


def _verdict(stdout: str, max_accuracy_drop: float, device: str) -> Comparison:
    """The device's JSON verdict, read whole and typed (or not accepted)."""
    source = Source(f"the verdict from {device}", strict=False)
    try:
        data = json.loads(stdout)
        latency = {f.name: data["latency"][f.name] for f in fields(LatencyVerdict)}
        return Comparison(
            latency=read_fields(LatencyVerdict, latency, source),
            base_top1=data["base_top1"],
            candidate_top1=float(data["candidate_top1"]),
            n=int(data["n"]),
            max_accuracy_drop=max_accuracy_drop,
            seconds=float(data["seconds"]),
            metric=str(data.get("metric", "top-1")),
        )
    except (ValueError, KeyError, TypeError, EdgetlError) as exc:
        raise DeviceFault(f"its verdict was not accepted: {exc}") from exc
