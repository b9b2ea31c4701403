"""`edgetl bench ART --on NAME[,NAME...]|all`: the bench run on each lab device, over ssh.

Per device, in turn (devices measured at the same time could share a host or a network and
disturb each other's latency): edgetl's device side there, each artifact copied once by
content, `edgetl build` where a TensorRT bundle has no engine for that device's TensorRT,
`edgetl bench` there with the same options, its JSON report fetched and read whole
(schema-checked), the baseline applied here. A device that fails is a row saying why; the
others still run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from rich.markup import escape

from edgetl.backends.tensorrt.record import ENGINE_RECORD, EngineRecord
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.files import read_json
from edgetl.core.options import argv
from edgetl.core.records import BENCH_SCHEMA, BenchReport, DeviceRun, LabReport, Manifest
from edgetl.core.records.detector import DetectorManifest, is_detector
from edgetl.core.records.manifest import verify_listed
from edgetl.core.verdict import Outcome
from edgetl.stages.bench.gate import check_baseline
from edgetl.stages.bench.harness import check_options
from edgetl.stages.bench.options import BenchOptions
from edgetl.stages.lab.labfile import find_lab, read_lab
from edgetl.stages.lab.remote import Remote
from edgetl.stages.lab.ssh import DeviceFault, RemotePath, multiplexed

T = TypeVar("T")
DEVICE_DATA = "device:"  # --data device:/path names a folder on the device, not copied


LabOutcome = Outcome[LabReport]  # the lab's report, and each device that failed or regressed


def bench_on(opts: BenchOptions, on: str, lab_file: Path | None) -> LabOutcome:
    """Bench `opts.artifacts` on the lab's devices named by `on`; the lab report, and what
    failed or regressed (per device)."""
    lab = read_lab(find_lab(lab_file))
    devices = lab.select(on)
    check_options(replace(opts, baseline=None))
    baselines = _baselines(opts.baseline)
    manifests = [checked(path) for path in opts.artifacts]  # exit 2 before any ssh
    local_data = local_data_folder(opts.data)
    runs = []
    with multiplexed(lab.multiplex) as control:
        for name, device in devices.items():
            runs.append(_run_device(Remote(name, device, lab, control), opts, manifests,
                                    local_data, baselines))  # fmt: skip
    report = LabReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        lab=str(lab.path),
        command=[],
        devices=runs,
    )
    failures = [f"{run.device}: {run.reason}" for run in runs if run.status != "ok"]
    return LabOutcome(report, failures)


def _run_device(
    remote: Remote,
    opts: BenchOptions,
    manifests: list[Manifest],
    local_data: Path | None,
    baselines: dict[str, BenchReport],
) -> DeviceRun:
    """One device's row: measured there, then gated here against its baseline."""
    name, device = remote.name, remote.device
    say(f"[bold]{escape(name)}[/] ({escape(device.ssh)}, {device.target}) ...")
    run = _on_device(remote, opts, manifests, local_data)
    if run.report is not None and opts.baseline is not None:
        base = baselines.get(name, baselines.get("*"))
        if base is None:
            run.reason = f"no baseline for {name} in {opts.baseline}"
        else:
            regressed = check_baseline(run.report, base, opts.gate, not device.emulated)
            if regressed:
                run.status, run.reason = "regressed", "; ".join(regressed)
    say(escape(f"  {name}: {run.status} {run.reason}".rstrip()))
    return run


def _on_device(
    remote: Remote,
    opts: BenchOptions,
    manifests: list[Manifest],
    local_data: Path | None,
) -> DeviceRun:
    def measure(run: DeviceRun, there: list[RemotePath], data: str | None) -> None:
        run.report = _bench_there(remote, there, data, opts, robustness_args(remote, opts))

    return on_device(remote, opts, manifests, local_data, measure)


def on_device(
    remote: Remote,
    opts: BenchOptions,
    manifests: Sequence[Manifest | DetectorManifest],
    local_data: Path | None,
    measure: Callable[[DeviceRun, list[RemotePath], str | None], None],
) -> DeviceRun:
    """One device's row: the artifacts and data placed there, `measure(run, artifacts there,
    data there)`, the time taken; a DeviceFault is the row's reason."""
    started = time.perf_counter()
    run = DeviceRun(remote.name, remote.device.target, "ok", emulated=remote.device.emulated)
    try:
        there = place(remote, opts.artifacts, manifests, run)
        data = device_data(remote, opts.data, local_data)
        remote.setup()
        measure(run, there, data)
    except DeviceFault as fault:
        run.status, run.reason = "failed", str(fault)
    run.seconds = round(time.perf_counter() - started, 2)
    return run


def checked(artifact: Path) -> Manifest:
    """The artifact's manifest, every file checked against it here (exit 2 before any ssh);
    the device checks the copy whole (remote.VERIFY)."""
    manifest = Manifest.read(artifact, verify=False)
    manifest.verify_files(artifact)
    return manifest


def checked_any(artifact: Path) -> Manifest | DetectorManifest:
    """checked() of a classifier's artifact or a detector's."""
    if not is_detector(artifact):
        return checked(artifact)
    found = DetectorManifest.read(artifact, verify=False)
    verify_listed(artifact, found.files)
    return found


def place(
    remote: Remote,
    artifacts: list[Path],
    manifests: Sequence[Manifest | DetectorManifest],
    run: DeviceRun,
) -> list[RemotePath]:
    """The device side ready for `artifacts` and each of them there (copied when absent,
    an engine built for a TensorRT bundle); their paths there. Notes copies and engines
    in `run`."""
    facts = remote.prepare({manifest.backend for manifest in manifests})
    there = []
    for path, manifest in zip(artifacts, manifests, strict=True):
        copy, copied = remote.put(path, manifest.digest)
        there.append(copy)
        if copied:
            run.copied.append(path.name)
        if manifest.backend == "tensorrt" and "tensorrt" in facts.runtimes:
            run.layers[path.name] = _engine(remote, copy, facts.runtimes["tensorrt"])
    return there


def _engine(remote: Remote, bundle: RemotePath, version: str) -> dict[str, Any]:
    """The bundle's engine there, built unless one for this TensorRT exists (the copy's
    folder is the bundle's content hash): its layer placement from the engine record."""
    found = remote.ssh.run(["cat", bundle / ENGINE_RECORD])
    stale: str | None = "absent"
    if found.returncode == 0:
        try:
            built = EngineRecord.parse(found.stdout, f"{remote.name}:{bundle}/{ENGINE_RECORD}")
            stale = built.stale({"tensorrt": version})
        except EdgetlError as exc:  # damaged: built again
            stale = str(exc)
    if stale is not None:
        remote.edgetl(["build", bundle])
        built = read_engine_record(remote, bundle)
    return {"dla_layers": built.dla_layers, "gpu_layers": built.gpu_layers,
            "tensorrt": built.tensorrt}  # fmt: skip


def read_engine_record(remote: Remote, bundle: RemotePath) -> EngineRecord:
    """The engine record `edgetl build` wrote there; DeviceFault when it is not one."""
    text = remote.ssh.check(["cat", bundle / ENGINE_RECORD], "reading the engine record")
    try:
        return EngineRecord.parse(text, f"{remote.name}:{bundle}/{ENGINE_RECORD}")
    except EdgetlError as exc:
        raise DeviceFault(f"its engine record was not accepted: {exc}") from exc


def local_data_folder(data: str | None) -> Path | None:
    if data is None or data.startswith(DEVICE_DATA):
        return None
    path = Path(data)
    if not path.is_dir():
        raise EdgetlError(
            f"--data {data}: with --on, give a folder here (copied to each device) or "
            f"{DEVICE_DATA}/path/on/the/device"
        )
    return path


def device_data(remote: Remote, data: str | None, local: Path | None) -> str | None:
    """--data as a path on the device: a local folder is copied once by content."""
    if data is None:
        return None
    if local is None:
        return data[len(DEVICE_DATA) :]
    return str(remote.put_folder(local))


def _bench_there(
    remote: Remote,
    artifacts: list[RemotePath],
    data: str | None,
    opts: BenchOptions,
    extra: list[str],
) -> BenchReport:
    return bench_there(remote, artifacts, data, opts, BenchReport.read, extra=extra)


def robustness_args(remote: Remote, opts: BenchOptions) -> list[str]:
    """--robustness's inputs on the device: albumentations in its env (the conditions are
    made where the model runs), the attack file and a suite of your own copied there once
    by content; the options naming them there."""
    if not opts.measures_robustness:
        return []
    remote.ensure("albumentations", "albumentations>=2.0,<3", "edgetl[robustness]")
    files = {"attack.npz": opts.attack} if opts.attack is not None else {}
    suite = opts.corruptions
    if suite.endswith(".toml"):
        files["suite.toml"] = Path(suite)
    args: list[str] = []  # --robustness itself travels with the remote options (argv)
    if files:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "robustness"  # a fixed name: copied once by content
            folder.mkdir()
            for name, path in files.items():
                shutil.copyfile(path, folder / name)
            there = remote.put_folder(folder)
        args += ["--attack", there / "attack.npz"] if opts.attack is not None else []  # implies it
        suite = str(there / "suite.toml") if "suite.toml" in files else suite
    return [*args, "--corruptions", suite]


def bench_there(
    remote: Remote,
    artifacts: list[RemotePath],
    data: str | None,
    opts: BenchOptions,
    read: Callable[[Path], T],
    accept: tuple[int, ...] = (0,),
    extra: Sequence[str] = (),
) -> T:
    """The device's own `edgetl bench` of `artifacts` (the options declared remote), its
    JSON report fetched here and read whole by `read`, or DeviceFault saying why not."""
    out = remote.scratch(".json")
    # The options the device's `edgetl bench` runs with (declared remote); outputs stay here.
    args: list[str] = ["bench", *artifacts, "--json", out, *argv(opts), *extra]
    if data is not None:
        args += ["--data", data]
    remote.edgetl(args, accept=accept)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "report.json"
        remote.fetch(out, local)
        try:
            return read(local)  # whole and schema-checked, or not at all
        except EdgetlError as exc:
            raise DeviceFault(f"its report was not accepted: {exc}") from exc


def _baselines(path: Path | None) -> dict[str, BenchReport]:
    """Per device from a lab report; a plain bench report applies to every device ("*")."""
    if path is None:
        return {}
    if not path.is_file():
        raise EdgetlError(f"--baseline {path}: no such report file")
    if read_json(path, "baseline report").get("schema") == BENCH_SCHEMA:
        found = {"*": BenchReport.read(path)}
    else:
        lab = LabReport.read(path)
        found = {run.device: run.report for run in lab.devices if run.report is not None}
    for base in found.values():
        for index, entry in enumerate(base.results):
            entry.stored_samples(path, index)
    return found
