"""`edgetl bench DETECTOR_ART --on NAME[,NAME...]|all`: detector artifacts benched on the lab's
devices, as classifiers' are (lab/bench.py): edgetl's device side there, each artifact
copied once by content and verified, --data copied (or named there), the device's own
`edgetl bench` run with the same options, its edgetl.detect-bench/1 report fetched and read
whole. A device that fails is a row saying why; the others still run."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from rich.markup import escape

from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.files import read_json
from edgetl.core.records import DeviceRun, LabReport, Manifest
from edgetl.core.records.detector import DETECT_BENCH_SCHEMA, DetectBenchReport, DetectorManifest
from edgetl.core.verdict import Outcome
from edgetl.stages.bench.options import BenchOptions
from edgetl.stages.detect.measure import gate, read_report
from edgetl.stages.lab.bench import (
    bench_there,
    checked_any,
    local_data_folder,
    on_device,
    robustness_args,
)
from edgetl.stages.lab.labfile import find_lab, read_lab
from edgetl.stages.lab.remote import Remote
from edgetl.stages.lab.ssh import RemotePath, multiplexed


def bench_detectors_on(opts: BenchOptions, on: str, lab_file: Path | None) -> Outcome[LabReport]:
    if opts.measures_robustness:
        from edgetl.stages.detect.robustness import check

        check(opts)  # exit 2 before any ssh
    baselines = _baselines(opts.baseline)
    lab = read_lab(find_lab(lab_file))
    devices = lab.select(on)
    manifests = [checked_any(path) for path in opts.artifacts]  # exit 2 before any ssh
    local = local_data_folder(opts.data)
    runs = []
    with multiplexed(lab.multiplex) as control:
        for name, device in devices.items():
            say(f"[bold]{escape(name)}[/] ({escape(device.ssh)}, {device.target}) ...")
            run = _on_device(Remote(name, device, lab, control), opts, manifests, local)
            _gate(run, baselines, opts)
            say(escape(f"  {name}: {run.status} {run.reason}".rstrip()))
            runs.append(run)
    report = LabReport(time.strftime("%Y-%m-%dT%H:%M:%S%z"), str(lab.path), [], runs)
    failures = [f"{run.device}: {run.reason}" for run in runs if run.status != "ok"]
    return Outcome(report, failures)


def _on_device(
    remote: Remote,
    opts: BenchOptions,
    manifests: list[Manifest | DetectorManifest],
    local: Path | None,
) -> DeviceRun:
    def measure(run: DeviceRun, there: list[RemotePath], data: str | None) -> None:
        # The device measures only: its baseline is applied here (_gate), from this side's file.
        mine = replace(opts, baseline=None)
        extra = robustness_args(remote, opts)
        run.detections = bench_there(remote, there, data, mine, _read, accept=(0, 1),
                                     extra=extra)  # fmt: skip
        if not run.detections.passed:
            run.status, run.reason = "failed", "; ".join(run.detections.failures)

    return on_device(remote, opts, manifests, local, measure)


def _read(path: Path) -> DetectBenchReport:
    return read_report(path, "the device's report")


def _baselines(path: Path | None) -> dict[str, DetectBenchReport]:
    """Per device from a lab report of detectors; a detector bench report applies to every
    device ("*")."""
    if path is None:
        return {}
    if not path.is_file():
        raise EdgetlError(f"--baseline {path}: no such report file")
    if read_json(path, "baseline report").get("schema") == DETECT_BENCH_SCHEMA:
        return {"*": read_report(path)}
    lab = LabReport.read(path)
    found = {run.device: run.detections for run in lab.devices if run.detections is not None}
    if not found:
        raise EdgetlError(
            f"--baseline {path}: a lab report without detector results; give a detector bench "
            "report or a lab report of `bench --on` detectors"
        )
    return found


def _gate(run: DeviceRun, baselines: dict[str, DetectBenchReport], opts: BenchOptions) -> None:
    """The device's report against its baseline, here: a regression is the row's status."""
    if run.detections is None or opts.baseline is None:
        return
    base = baselines.get(run.device, baselines.get("*"))
    if base is None:
        run.status, run.reason = "failed", f"no baseline for {run.device} in {opts.baseline}"
        return
    regressed = gate(run.detections, base, opts, latency=not run.emulated)
    if regressed and run.status == "ok":
        run.status, run.reason = "regressed", "; ".join(regressed)
