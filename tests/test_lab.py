"""The device lab against a real OpenSSH server (tests/sshd.py): this machine is the device,
reached through sshd on 127.0.0.1, with edgetl's device side installed into its own venv
from edgetl's wheel on first use, as on a board. Skipped where sshd is absent (CI installs
Debian's openssh-server, so there they run)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.cli import main
from tests.conftest import export_cli
from tests.sshd import SshServer, find_sshd, start

pytestmark = pytest.mark.e2e
SSHD = find_sshd()
needs_sshd = pytest.mark.skipif(SSHD is None, reason="no sshd (apt-get install openssh-server)")
# A workdir whose name would run `touch` if any remote word were not quoted.
HOSTILE = "lab dir; touch PWNED"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if SSHD is None:
        pytest.skip("no sshd (apt-get install openssh-server)")
    running = start(tmp_path_factory.mktemp("sshd"), SSHD)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def artifacts(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("lab-artifacts")
    made = {}
    for name, target in (("cpu fp32; x", "cpu"), ("ov", "openvino-cpu")):
        result = export_cli(tiny_run, out / name, "--target", target, "--precision", "fp32")
        assert result.exit_code == 0, result.output
        made[target] = out / name
    return made


@pytest.fixture(scope="module")
def lab(server: SshServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """local: the managed venv in a hostile workdir; twin: the same device through the same
    venv (python = that venv); stranger: a host key not in known_hosts; down: nothing
    listening."""
    folder = tmp_path_factory.mktemp("lab")
    workdir = folder / HOSTILE
    base = sys._base_executable  # an interpreter with venv, as python3 is on a board
    lab_file = folder / "devices.toml"
    lab_file.write_text(
        f'ssh_config = "{server.client_config}"\n'
        f'[devices.local]\nssh = "lab-local"\ntarget = "cpu"\nworkdir = "{workdir}"\n'
        f'base_python = "{base}"\n'
        f'[devices.twin]\nssh = "lab-local"\ntarget = "cpu"\nworkdir = "{folder / "twin"}"\n'
        f'python = "{workdir / "venv/bin/python"}"\n'
        f'[devices.stranger]\nssh = "lab-stranger"\ntarget = "cpu"\n'
        f'[devices.down]\nssh = "lab-down"\ntarget = "cpu"\nconnect_timeout_s = 3\n'
    )
    # The managed venv, made from edgetl's wheel as `bench --on` makes it on first use (here
    # up front, so that any test can run alone: twin and cut use it).
    from edgetl.stages.lab.labfile import read_lab
    from edgetl.stages.lab.remote import Remote

    parsed = read_lab(lab_file)
    facts = Remote("local", parsed.devices["local"], parsed).prepare({"onnxruntime", "openvino"})
    assert {"onnxruntime", "openvino"} <= set(facts.runtimes)
    return lab_file


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def bench_on(lab: Path, on: str, out: Path, *arts: Path, extra: tuple[str, ...] = ()) -> tuple:
    code, output = cli("bench", *arts, "--on", on, "--lab", lab, "--iterations", "20",
                       "--rounds", "2", "--no-cold", "--json", out, *extra)  # fmt: skip
    return code, output, json.loads(out.read_text()) if out.is_file() else None


@needs_sshd
def test_bench_on_a_device_gives_the_local_accuracy_and_copies_once(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    arts = (artifacts["cpu"], artifacts["openvino-cpu"])
    code, output, report = bench_on(lab, "local", tmp_path / "lab.json", *arts)
    assert code == 0, output
    (run,) = report["devices"]
    assert run["status"] == "ok" and sorted(run["copied"]) == sorted(a.name for a in arts)
    local = tmp_path / "local.json"
    assert cli("bench", *arts, "--iterations", "20", "--rounds", "2", "--no-cold",
               "--json", local)[0] == 0  # fmt: skip
    here = json.loads(local.read_text())["results"]
    there = run["report"]["results"]
    for a, b in zip(here, there, strict=True):
        assert (a["backend"], a["accuracy"]) == (b["backend"], b["accuracy"])
    # The remote words were data: the hostile workdir exists, nothing ran `touch`.
    workdir = lab.parent / HOSTILE
    assert (workdir / "venv").is_dir() and not list(lab.parent.rglob("PWNED"))
    assert not Path("PWNED").exists() and not (Path.home() / "PWNED").exists()
    again = bench_on(lab, "local", tmp_path / "again.json", *arts)
    assert again[0] == 0 and again[2]["devices"][0]["copied"] == []


@needs_sshd
def test_devices_lists_a_reachable_and_an_unreachable_device(lab: Path) -> None:
    code, output = cli("devices", "--lab", lab, "--json")
    assert code == 1  # a device could not be reached: a failed check
    facts = {d["name"]: d for d in json.loads(output[: output.rindex("}") + 1])["devices"]}
    assert facts["local"]["reachable"] and facts["local"]["arch"] == platform.machine()
    assert facts["local"]["python"] == platform.python_version()
    assert not facts["down"]["reachable"] and "unreachable" in facts["down"]["reason"]
    assert "down:" in output.splitlines()[-1]


@needs_sshd
def test_faulty_devices_are_rows_saying_why_and_the_others_still_run(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    junit = tmp_path / "lab.xml"
    code, output, report = bench_on(lab, "stranger,local,down", tmp_path / "r.json",
                                    artifacts["cpu"], extra=("--junit", str(junit)))  # fmt: skip
    assert code == 1
    suites = {s.get("name"): s for s in ET.parse(junit).getroot()}
    assert suites["edgetl bench on stranger"].get("failures") == "1"
    assert suites["edgetl bench on local"].get("failures") == "0"
    runs = {run["device"]: run for run in report["devices"]}
    assert runs["local"]["status"] == "ok" and runs["local"]["report"]["results"]
    stranger = runs["stranger"]
    assert stranger["status"] == "failed" and "report" not in stranger
    assert "not in known_hosts" in stranger["reason"]
    assert "StrictHostKeyChecking=accept-new" in stranger["reason"]  # the line that trusts it
    assert runs["down"]["status"] == "failed" and "unreachable" in runs["down"]["reason"]
    last = " ".join(output.split())
    assert "stranger:" in last and "down:" in last and "local:" not in last.split("error:")[-1]


@needs_sshd
def test_a_baseline_failing_on_one_device_exits_1_naming_it(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    code, output, first = bench_on(lab, "local,twin", tmp_path / "first.json", artifacts["cpu"])
    assert code == 0, output
    # The baseline says twin once ran 10x faster and local 10x slower than measured now.
    for run, scale in zip(first["devices"], (10.0, 0.1), strict=True):
        for entry in run["report"]["results"]:
            entry["samples_ms"] = [s * scale for s in entry["samples_ms"]]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(first))
    gate = ("--baseline", str(baseline))
    code, output, report = bench_on(
        lab, "local,twin", tmp_path / "second.json", artifacts["cpu"], extra=gate
    )
    assert code == 1
    status = {run["device"]: run["status"] for run in report["devices"]}
    assert status == {"local": "ok", "twin": "regressed"}
    assert "twin:" in output.split("error:")[-1] and "local:" not in output.split("error:")[-1]


@needs_sshd
def test_a_damaged_copy_on_the_device_is_copied_again(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    assert bench_on(lab, "local", tmp_path / "a.json", artifacts["cpu"])[0] == 0
    copies = list((lab.parent / HOSTILE / "artifacts").glob(f"*/{artifacts['cpu'].name}"))
    (copy,) = copies
    (copy / "model.onnx").write_bytes(b"half a file")
    code, output, report = bench_on(lab, "local", tmp_path / "b.json", artifacts["cpu"])
    assert code == 0, output
    assert report["devices"][0]["copied"] == [artifacts["cpu"].name]
    assert (copy / "model.onnx").read_bytes() == (artifacts["cpu"] / "model.onnx").read_bytes()


@needs_sshd
def test_a_managed_env_of_other_edgetl_code_is_updated(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    """Same version number, other code (a development build): the env is reinstalled."""
    from edgetl.core.artifact.selfwheel import code_digest

    marker = lab.parent / HOSTILE / "venv/edgetl-code.sha256"
    marker.write_text("the code of another build")
    assert bench_on(lab, "local", tmp_path / "r.json", artifacts["cpu"])[0] == 0
    assert marker.read_text() == code_digest()


@needs_sshd
def test_a_report_cut_short_on_the_device_is_not_accepted(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    """A device side whose report file is truncated after bench wrote it: the row fails."""
    python = lab.parent / HOSTILE / "venv/bin/python"
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'"{python}" "$@"; status=$?\n'
        'for arg in "$@"; do case "$arg" in *.json) truncate -s 200 "$arg";; esac; done\n'
        "exit $status\n"
    )
    wrapper.chmod(0o755)
    broken = tmp_path / "devices.toml"
    broken.write_text(
        lab.read_text().split("[devices.twin]")[0].replace("[devices.local]", "[devices.cut]")
        + f'python = "{wrapper}"\n'
    )
    code, output, report = bench_on(broken, "cut", tmp_path / "r.json", artifacts["cpu"])
    assert code == 1
    (run,) = report["devices"]
    assert run["status"] == "failed" and "report was not accepted" in run["reason"]
    assert "report" not in run


@needs_sshd
def test_a_dropped_connection_fails_the_device_and_accepts_no_report(
    lab: Path, server: SshServer, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "dropped.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "edgetl", "bench", str(artifacts["cpu"]), "--on", "local",
         "--lab", str(lab), "--no-cold", "--min-duration", "120", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        marker = "--min-duration"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _remote_bench(marker):
            time.sleep(0.2)
        assert _remote_bench(marker), "the device's bench never started"
        time.sleep(1)
        for child in _children(server.process.pid):  # each connection's sshd
            os.kill(child, signal.SIGKILL)
        stdout, stderr = bench.communicate(timeout=120)
    finally:
        bench.kill()
        for pid in _remote_bench(marker):
            os.kill(pid, signal.SIGKILL)
    assert bench.returncode == 1, stdout + stderr
    (run,) = json.loads(out.read_text())["devices"]
    assert run["status"] == "failed" and "report" not in run
    assert "local:" in stderr and "dropped" in run["reason"] + " " + run["reason"].lower()


@needs_sshd
def test_compare_on_a_device_brings_the_verdict_back(lab: Path, artifacts: dict[str, Path]) -> None:
    art = artifacts["cpu"]
    code, output = cli("compare", art, art, "--on", "local,down", "--lab", lab, "--json",
                       "--rounds", "3", "--iterations", "5", "--max-regression", "300")  # fmt: skip
    assert code == 1  # down failed; local's verdict came back
    found = json.loads(output[output.index("{\n") : output.rindex("}") + 1])
    runs = {run["device"]: run for run in found["devices"]}
    local = runs["local"]["comparison"]
    assert runs["local"]["status"] == "ok" and local["accuracy_drop_pts"] == 0.0
    assert local["latency"]["method"] == "paired rounds" and local["n"] > 0
    assert runs["down"]["status"] == "failed" and runs["down"]["comparison"] is None


def run_suite(suite: Path, lab: Path, on: str) -> subprocess.CompletedProcess[str]:
    """A user's pytest suite run in its own folder with the plugin on the lab's `on`."""
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
               str(suite), "--edgetl-lab", str(lab), "--edgetl-on", on]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          cwd=suite.parent)  # fmt: skip


@needs_sshd
def test_a_users_suite_runs_once_per_lab_device(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    """The plugin's `edgetl_device` fixture, as a user's regression suite uses it."""
    suite = tmp_path / "test_devices.py"
    suite.write_text(
        "def test_cpu_fp32(edgetl_device):\n"
        f"    result = edgetl_device.bench({str(artifacts['cpu'])!r}, iterations=10)\n"
        "    assert result.backend == 'onnxruntime' and result.accuracy.n == 12\n"
        "    print('RAN ON', edgetl_device.name)\n"
    )
    result = run_suite(suite, lab, "local,twin,down")
    assert "2 passed" in result.stdout and "1 failed" in result.stdout, result.stdout
    assert "RAN ON local" in result.stdout and "RAN ON twin" in result.stdout
    assert "test_cpu_fp32[down]" in result.stdout and "unreachable" in result.stdout
    alone = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(suite), "-rs"], capture_output=True, text=True, timeout=600,
                           cwd=tmp_path, env={**os.environ, "EDGETL_LAB": ""})  # fmt: skip
    assert "1 skipped" in alone.stdout and "no device lab" in alone.stdout, alone.stdout


@needs_sshd
def test_data_is_copied_to_the_device_or_named_there(
    lab: Path, artifacts: dict[str, Path], tiny_run: Path, tmp_path: Path
) -> None:
    """--data DIR is copied (once, by content); --data device:/path is read there. Both give
    the accuracy a local bench on that folder gives."""
    photos = tiny_run.parent / "photos"
    art = artifacts["cpu"]
    local = tmp_path / "local.json"
    assert cli("bench", art, "--data", photos, "--no-cold", "--iterations", "5",
               "--json", local)[0] == 0  # fmt: skip
    here = json.loads(local.read_text())["results"][0]["accuracy"]
    # Agreement with FP32 on a folder needs the run's PyTorch model: here, not on a device
    # (the reference set carries FP32's answers, so agreement is measured there by default).
    here["agreement"] = None
    for data in (str(photos), f"device:{photos}"):
        code, output, report = bench_on(lab, "local", tmp_path / "r.json", art,
                                        extra=("--data", data))  # fmt: skip
        assert code == 0, output
        assert report["devices"][0]["report"]["results"][0]["accuracy"] == here
    copies = list((lab.parent / HOSTILE / "data").glob("*/photos"))
    assert len(copies) == 1


@needs_sshd
def test_a_command_past_its_timeout_fails_the_device(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    slow = tmp_path / "devices.toml"
    slow.write_text(lab.read_text().replace("[devices.twin]\n", "[devices.twin]\ntimeout_s = 4\n"))
    started = time.monotonic()
    code, output, report = bench_on(slow, "twin", tmp_path / "r.json", artifacts["cpu"],
                                    extra=("--min-duration", "60"))  # fmt: skip
    assert code == 1 and time.monotonic() - started < 40
    (run,) = report["devices"]
    assert run["status"] == "failed" and "timed out after 4 s" in run["reason"]
    # The device's own `timeout` ends the bench there too: nothing goes on measuring.
    deadline = time.monotonic() + 20
    while _remote_bench("--min-duration 60") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _remote_bench("--min-duration 60")


@needs_sshd
def test_a_jetson_bundle_on_a_device_without_tensorrt(
    lab: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """Polygraphy (which runs every engine) is installed with the TensorRT runtime before
    anything is built: in the managed env; a device's own env (twin) is told what to run.
    Then build --on fails that device saying TensorRT is not importable there; bench --on
    measures accuracy on the host proxy and says so (no device latency)."""
    import subprocess

    from edgetl.stages.lab.labfile import read_lab
    from edgetl.stages.lab.remote import Remote

    bundle = tmp_path / "jetson-fp16"
    result = export_cli(tiny_run, bundle, "--target", "jetson", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    parsed = read_lab(lab)
    remote = Remote("local", parsed.devices["local"], parsed)
    subprocess.run([str(remote.python), "-m", "pip", "uninstall", "-y", "-q",
                    "polygraphy"], capture_output=True, timeout=120)  # fmt: skip
    assert "polygraphy" not in remote.probe().packages
    code, output = cli("build", bundle, "--on", "twin", "--lab", lab)
    text = " ".join(output.split())
    assert code == 1 and "lacks polygraphy" in text and "pip install 'polygraphy'" in text
    code, output = cli("build", bundle, "--on", "local", "--lab", lab)
    assert code == 1 and "cannot import TensorRT" in " ".join(output.split())
    assert "polygraphy" in remote.probe().packages  # installed before the build was tried
    code, output, report = bench_on(lab, "local", tmp_path / "r.json", bundle)
    assert code == 0, output
    (entry,) = report["devices"][0]["report"]["results"]
    assert (entry["backend"], entry["proxy_for"]) == ("onnxruntime", "tensorrt")
    assert "proxy for tensorrt" in " ".join(output.split())


@needs_sshd
def test_search_times_its_architectures_on_a_lab_device(
    lab: Path, tiny_weights: Path, tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    """`edgetl search --on local`: each architecture compiled here, copied to the device and
    timed there in one run of `edgetl probe-latency`, with the --reference artifact; the rest
    of the search as usual."""
    from tests.conftest import write_folder

    data = write_folder(tmp_path / "photos", per_class=8)
    reference = artifacts["cpu"]  # 64 px: the 32 and 48 px candidates fit 4x its latency
    code, output = cli("search", "--data", data, "--target", "cpu", "--out", tmp_path / "s",
                       "--max-latency", "4x", "--reference", reference,
                       "--backbones", "test_efficientnet", "--weights",
                       tiny_weights, "--sizes", "32,48", "--precisions", "fp32", "--epochs", "3",
                       "--iterations", "20", "--cache-dir", tmp_path / "cache", "--on", "local",
                       "--lab", lab)  # fmt: skip
    assert code == 0, output
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert {c["runtime"] for c in saved["candidates"]} == {"onnxruntime on local"}
    assert saved["reference"]["runtime"] == "onnxruntime on local"
    assert saved["budget_ms"] == round(4 * saved["reference"]["p50_ms"], 4)
    assert {c["status"] for c in saved["candidates"]} <= {"chosen", "on the front", "dominated"}
    copied = list((lab.parent / HOSTILE / "data").glob("*/test_efficientnet-*-linear-fp32"))
    assert len(copied) == 2 and all((c / "probe.json").is_file() for c in copied)
    (shipped,) = (lab.parent / HOSTILE / "data").glob("*/reference")
    assert json.loads((shipped / "probe.json").read_text())["size"] == 64
    assert (tmp_path / "s" / "chosen" / "manifest.json").is_file()
    code, output = cli("search", "--data", data, "--target", "cpu", "--out", tmp_path / "t",
                       "--max-latency", "1.0", "--backbones", "test_efficientnet", "--weights",
                       tiny_weights, "--sizes", "32", "--precisions", "fp32", "--on", "down",
                       "--lab", lab, "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert code == 2 and "--on down" in " ".join(output.split())
    # A Jetson target: its probes are TensorRT bundles whose engines the device builds; a
    # device without TensorRT says so (exit 2: the search cannot time there).
    code, output = cli("search", "--data", data, "--target", "jetson", "--out", tmp_path / "j",
                       "--max-latency", "5", "--backbones", "test_efficientnet", "--weights",
                       tiny_weights, "--sizes", "32", "--precisions", "fp16", "--on", "local",
                       "--lab", lab, "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert code == 2 and "TensorRT cannot run here" in " ".join(output.split()), output


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _remote_bench(marker: str) -> list[int]:
    """The device side's `edgetl bench` processes (run through sshd, in the lab workdir)."""
    found = subprocess.run(["pgrep", "-f", f"{HOSTILE}.*edgetl bench.*{marker}"],
                           capture_output=True, text=True)  # fmt: skip
    return [int(p) for p in found.stdout.split()]


def test_lab_file_mistakes_exit_2_naming_the_key_and_device(tmp_path: Path) -> None:
    lab = tmp_path / "devices.toml"
    lab.write_text('[devices.orin1]\nssh = "me@orin"\ntarget = "jetson"\nclocks = "max"\n')
    code, output = cli("devices", "--lab", lab)
    assert code == 2 and "devices.orin1.clocks" in output
    lab.write_text('[devices.orin1]\nssh = "me@orin"\ntarget = "jetson"\n')
    code, output = cli("bench", tmp_path, "--on", "orin2", "--lab", lab)
    assert code == 2 and "orin2" in output and "orin1" in output
    code, output = cli("devices", "--lab", tmp_path / "absent.toml")
    assert code == 2 and "absent.toml" in output
    lab.write_text('[devices.x]\nssh = "-oProxyCommand=touch PWNED"\ntarget = "cpu"\n')
    code, output = cli("devices", "--lab", lab)
    assert code == 2 and "devices.x.ssh" in output


@needs_sshd
def test_a_failed_copy_leaves_nothing_in_incoming(lab: Path, tmp_path: Path, monkeypatch) -> None:
    """A copy that fails after part of it landed (the link drops while it is checked) left
    WORKDIR/incoming/<random> forever: it is removed on failure, and what a dead link could
    not remove is swept by the next probe once older than a command may run."""
    from edgetl.stages.lab.labfile import read_lab
    from edgetl.stages.lab.remote import Remote
    from edgetl.stages.lab.ssh import DeviceFault

    parsed = read_lab(lab)
    remote = Remote("local", parsed.devices["local"], parsed)
    incoming = Path(str(remote.workdir)) / "incoming"
    folder = tmp_path / "payload"
    folder.mkdir()
    (folder / "data.bin").write_bytes(os.urandom(4096))  # content no earlier test copied
    original = Remote._digest

    def drops(self: Remote, script: str, path, depth: str, skip=()) -> str:  # type: ignore[no-untyped-def]
        if depth == "whole":  # the check of the fresh copy: the link drops here
            raise DeviceFault("connection dropped")
        return original(self, script, path, depth, skip)

    monkeypatch.setattr(Remote, "_digest", drops)
    with pytest.raises(DeviceFault, match="connection dropped"):
        remote.put_folder(folder)
    assert not incoming.is_dir() or list(incoming.iterdir()) == []
    monkeypatch.setattr(Remote, "_digest", original)
    stale, fresh = incoming / "0123456789abcdef", incoming / "fedcba9876543210"
    for path in (stale, fresh):
        (path / "x").mkdir(parents=True)
    old = time.time() - 2 * 3600 - parsed.devices["local"].timeout_s
    os.utime(stale, (old, old))
    assert remote.probe().reachable
    assert not stale.exists() and fresh.is_dir()  # another host's copy may be going on
    shutil.rmtree(fresh)


@pytest.fixture(scope="module")
def detector(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A detector artifact (tiny backbone, 64 px) and its YOLO data folder."""
    from edgetl.core.data.scenes import make_scenes
    from tests.conftest import TINY_BACKBONE

    base = tmp_path_factory.mktemp("lab-detector")
    data = make_scenes(base / "scenes", sizes={"train": 24, "val": 12, "test": 8})
    code, output = cli("finetune", "--data", data, "--out", base / "run", "--backbone",
                       TINY_BACKBONE, "--weights", tiny_weights, "--image-size", "64",
                       "--epochs", "2")  # fmt: skip
    assert code == 0, output
    result = export_cli(base / "run", base / "det", "--target", "cpu", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    return base / "det", data


@needs_sshd
def test_a_detector_benched_on_a_device_gives_the_local_map(
    lab: Path, detector: tuple[Path, Path], tmp_path: Path
) -> None:
    artifact, data = detector
    here = tmp_path / "here.json"
    code, output = cli("bench", artifact, "--data", data, "--iterations", "20", "--json", here)
    assert code == 0, output
    code, output, report = bench_on(lab, "local", tmp_path / "lab.json", artifact,
                                    extra=("--data", str(data)))  # fmt: skip
    assert code == 0, output
    (run,) = report["devices"]
    assert run["status"] == "ok" and "report" not in run
    there = run["detections"]["results"][0]
    local = json.loads(here.read_text())["results"][0]
    assert there["map50_95"] == local["map50_95"] and there["images"] == local["images"] == 8
    assert there["latency"]["p50"] > 0


@needs_sshd
def test_a_detector_on_a_device_is_gated_here_against_its_baseline(
    lab: Path, detector: tuple[Path, Path], tmp_path: Path
) -> None:
    """--baseline with --on for detectors: a detector bench report for every device, or a lab
    report per device; the gate runs here on the device's report."""
    artifact, data = detector
    here = tmp_path / "here.json"
    assert cli("bench", artifact, "--data", data, "--iterations", "5", "--json", here)[0] == 0
    higher = json.loads(here.read_text())
    higher["results"][0]["map50_95"] += 0.5  # a baseline 50 points better than this model
    higher["results"][0]["answers"][0].append([0.0, 0.0, 5.0, 5.0, 0.0, 0.99])  # and otherwise
    (tmp_path / "higher.json").write_text(json.dumps(higher))
    loose = ("--data", str(data), "--max-regression", "1000")
    baseline = ("--baseline", str(tmp_path / "higher.json"))
    md, junit = tmp_path / "a.md", tmp_path / "a.xml"
    code, output, report = bench_on(lab, "local", tmp_path / "a.json", artifact,
                                    extra=(*loose, *baseline, "--md", str(md), "--junit",
                                           str(junit)))  # fmt: skip
    assert code == 1, output
    (run,) = report["devices"]
    assert run["status"] == "regressed" and "below the baseline" in run["reason"]
    assert "| local |" in md.read_text() and "regressed" in md.read_text()
    cases = ET.parse(junit).getroot().iter("testcase")
    assert [c.get("name") for c in cases if c.find("failure") is not None] == ["mAP regression"]
    # the device's answers came back and were compared here, image by image
    assert "(1 not" in run["detections"]["results"][0]["checks"]["answers"]
    code, output, report = bench_on(lab, "local", tmp_path / "b.json", artifact,
                                    extra=(*loose, "--baseline", str(here)))  # fmt: skip
    assert code == 0 and report["devices"][0]["status"] == "ok", output
    checks = report["devices"][0]["detections"]["results"][0]["checks"]
    assert checks["answers"].startswith("100.0% of images answered as the baseline")
    code, output, _ = bench_on(lab, "local", tmp_path / "c.json", artifact,
                               extra=(*loose, "--baseline", str(tmp_path / "b.json")))  # fmt: skip
    assert code == 0, output  # the lab's own report, per device


@needs_sshd
def test_a_users_suite_benches_a_detector_on_a_lab_device(
    lab: Path, detector: tuple[Path, Path], tmp_path: Path
) -> None:
    """`edgetl_device.bench(DETECTOR)`: the device's detector entry (the run's test split, or
    the artifact's reference set where the data is not there), mAP and latency with NMS."""
    artifact, _ = detector
    suite = tmp_path / "test_detector.py"
    suite.write_text(
        "def test_detector(edgetl_device):\n"
        f"    result = edgetl_device.bench({str(artifact)!r}, iterations=5)\n"
        "    assert result.images == 8 and result.latency.p50 > 0 and result.map50_95 >= 0\n"
        "    print('DETECTED ON', edgetl_device.name)\n"
    )
    result = run_suite(suite, lab, "local")
    assert "1 passed" in result.stdout and "DETECTED ON local" in result.stdout, result.stdout


@needs_sshd
def test_compare_of_detectors_on_a_device_brings_their_map_verdict_back(
    lab: Path, detector: tuple[Path, Path]
) -> None:
    art, _ = detector
    code, output = cli("compare", art, art, "--on", "local", "--lab", lab, "--json",
                       "--rounds", "3", "--iterations", "5", "--max-regression", "300")  # fmt: skip
    assert code == 0, output
    found = json.loads(output[output.index("{\n") : output.rindex("}") + 1])
    (run,) = found["devices"]
    verdict = run["comparison"]
    assert run["status"] == "ok" and verdict["metric"] == "mAP50-95"
    assert verdict["base_top1"] == verdict["candidate_top1"] and verdict["n"] == 8


@needs_sshd
def test_a_detector_search_times_its_artifacts_on_a_lab_device(
    lab: Path, detector: tuple[Path, Path], tiny_weights: Path, tmp_path: Path
) -> None:
    """`edgetl search --on local` of a detection set: every architecture, untrained, timed
    there before training; every artifact copied to the device with the first val images
    and detected there in turn (NMS included) in one probe run; a device that cannot be
    reached is exit 2."""
    from tests.conftest import TINY_BACKBONE

    _, data = detector
    common = ("--data", data, "--target", "cpu", "--backbones", TINY_BACKBONE, "--weights",
              tiny_weights, "--sizes", "64", "--epochs", "2", "--iterations", "20",
              "--precisions", "fp32", "--lab", lab, "--max-latency", "1000")  # fmt: skip
    code, output = cli("search", *common, "--out", tmp_path / "s", "--on", "local")
    assert code == 0, output
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    (candidate,) = saved["candidates"]
    assert candidate["runtime"] == "onnxruntime on local"
    assert candidate["latency_ms"] > 0 and saved["chosen"] == candidate["key"]
    # timed there before training too: the untrained graph (no NMS), compiled here
    assert candidate["before_training_ms"] > 0
    (untrained,) = (lab.parent / HOSTILE / "data").glob(f"*/untrained-{candidate['key']}")
    assert json.loads((untrained / "probe.json").read_text())["inputs"] is None
    (shipped,) = (lab.parent / HOSTILE / "data").glob(f"*/{candidate['key']}")
    probe = json.loads((shipped / "probe.json").read_text())
    assert probe["inputs"] == "inputs.npz" and (shipped / "manifest.json").is_file()
    with np.load(shipped / "inputs.npz") as sent:  # val's first images, letterboxed uint8
        assert sent["images"].dtype == np.uint8 and sent["images"].shape[1:] == (3, 64, 64)
    code, output = cli("search", *common, "--out", tmp_path / "t", "--on", "down")
    assert code == 2 and "--on down" in " ".join(output.split()), output


@needs_sshd
def test_robustness_on_a_device_matches_the_host(
    lab: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    """--robustness over the real sshd: the attack file copied there, albumentations
    installed into the managed env, the conditions made there; this device is this machine,
    so it fed the model the host's very pixels and got the host's answers."""
    art = artifacts["cpu"]
    crafted = tmp_path / "attack.npz"
    assert cli("attack", art, "--out", crafted, "--epsilons", "8", "--steps", "2",
               "--surrogate-images", "30")[0] == 0  # fmt: skip
    extra = ("--robustness", "--attack", str(crafted))
    md = tmp_path / "lab.md"
    code, output, report = bench_on(lab, "local", tmp_path / "lab.json", art,
                                    extra=(*extra, "--md", str(md)))  # fmt: skip
    assert code == 0, output
    assert "robustness" in output and "public backbone" in output
    written = md.read_text()  # the Markdown report has the section too, by device
    name = report["devices"][0]["report"]["results"][0]["name"]
    assert "**Robustness**" in written and f"| local/{name} |" in written
    there = report["devices"][0]["report"]["results"][0]["robustness"]
    local = tmp_path / "local.json"
    assert cli("bench", art, "--iterations", "10", "--rounds", "1", "--no-cold", *extra,
               "--json", local)[0] == 0  # fmt: skip
    here = json.loads(local.read_text())["results"][0]["robustness"]
    assert there["corruptions"] == here["corruptions"] and there["attack"] == here["attack"]
    assert there["attack_info"]["sha256"] == here["attack_info"]["sha256"]


@needs_sshd
def test_a_detector_on_an_emulated_device_hides_and_never_gates_its_latency(
    lab: Path, detector: tuple[Path, Path], tmp_path: Path
) -> None:
    """The lab's local device marked `emulated = true` (as tools/arm_device.py writes it): a
    detector's latency there shows as emulated, and a baseline 100x faster fails nothing; its
    mAP is still gated; --robustness of a detector comes back from the device."""
    artifact, data = detector
    emulated = tmp_path / "devices.toml"
    emulated.write_text(lab.read_text().replace('[devices.local]\n',
                                                '[devices.local]\nemulated = true\n'))  # fmt: skip
    here = tmp_path / "here.json"
    assert cli("bench", artifact, "--data", data, "--iterations", "5", "--json", here)[0] == 0
    faster = json.loads(here.read_text())
    for key in ("p50", "p90", "p99", "mean", "min", "max"):
        if key in faster["results"][0]["latency"]:
            faster["results"][0]["latency"][key] /= 100
    (tmp_path / "faster.json").write_text(json.dumps(faster))
    args = ("--data", str(data), "--baseline", str(tmp_path / "faster.json"))
    code, output, report = bench_on(emulated, "local", tmp_path / "a.json", artifact, extra=args)
    assert code == 0, output
    assert "emulated" in output and report["devices"][0]["status"] == "ok"
    checks = report["devices"][0]["detections"]["results"][0]["checks"]
    assert "not gated" in checks["latency"], checks
    code, output, report = bench_on(emulated, "local", tmp_path / "b.json", artifact,
                                    extra=("--robustness",))  # fmt: skip
    assert code == 0, output
    robust = report["devices"][0]["detections"]["results"][0]["robustness"]
    assert robust["measure"] == "mAP50-95" and len(robust["corruptions"]) == 45
    assert "mAP50-95 under" in output
