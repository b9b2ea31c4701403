"""The emulated aarch64 lab device (tools/arm_device.py): an arm64 Debian userland under
qemu-user with its own sshd, benched through the lab like a board. Its answers are an ARM
CPU's (ONNX Runtime's aarch64 kernels); its latency means nothing and is never shown as a
device's. Building it costs ~3 min once per machine (cached in $EDGETL_ARM_HOME); it needs
root and Debian's qemu-user-static, debootstrap and binfmt-support (CI installs them).
Skip these while developing with -m "not emulated"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgetl.cli import main
from tests.conftest import TINY_BUDGET, export_cli
from tools import arm_device

pytestmark = [pytest.mark.e2e, pytest.mark.emulated]
TEST_WORKDIR = "/root/edgetl-tests"


@pytest.fixture(scope="module")
def arm_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        arm_device.check_host()
    except arm_device.Refused as refused:
        pytest.skip(f"no emulated arm64 device here: {refused}")
    lab = tmp_path_factory.mktemp("arm-lab") / "devices.toml"
    # A workdir of the tests' own: the managed env there must stay without torch (the one
    # tools/bench_arm.py uses gets torch for .pte artifacts)
    up = ["up", "--lab", str(lab), "--workdir", TEST_WORKDIR]
    started = arm_device.main(up)
    if started == 2:  # refused by the machine (no binfmt_misc mount): said on stderr
        pytest.skip("the emulated arm64 device cannot start on this machine (see stderr)")
    assert started == 0
    assert arm_device.main(up) == 0  # idempotent: one entry, same port
    assert lab.read_text().count("[devices.arm64]") == 1
    return lab


@pytest.fixture(scope="module")
def arm_artifacts(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("arm-artifacts")
    made = []
    for precision in ("fp32", "int8"):
        extra = TINY_BUDGET if precision == "int8" else ()
        result = export_cli(tiny_run, out / precision, "--target", "cpu", "--precision",
                            precision, *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        made.append(out / precision)
    return made


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_devices_reports_an_emulated_aarch64(arm_lab: Path) -> None:
    result = cli("devices", "--lab", arm_lab, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)["devices"]
    (device,) = [d for d in found if d["name"] == "arm64"]
    assert device["arch"] == "aarch64" and device["emulated"] is True
    table = cli("devices", "--lab", arm_lab)
    assert "aarch64 (emulated)" in table.output


def test_bench_on_arm64_gives_the_hosts_answers_and_hides_its_latency(
    arm_lab: Path, arm_artifacts: list[Path], tmp_path: Path
) -> None:
    host = tmp_path / "host.json"
    result = cli("bench", *arm_artifacts, "--iterations", 10, "--json", host)
    assert result.exit_code == 0, result.output
    lab_json, md = tmp_path / "lab.json", tmp_path / "lab.md"
    result = cli("bench", *arm_artifacts, "--on", "arm64", "--lab", arm_lab, "--iterations", 10,
                 "--baseline", host, "--max-accuracy-drop", 10, "--json", lab_json,
                 "--md", md)  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = json.loads(lab_json.read_text())["devices"]
    assert run["emulated"] is True and run["status"] == "ok"
    hosts = {e["precision"]: e for e in json.loads(host.read_text())["results"]}
    for entry in run["report"]["results"]:
        env = entry["env"]
        assert env["machine"] == "aarch64" and env["runtimes"]["torch"] == "absent"
        check = entry["checks"]["accuracy"]
        assert "latency" not in entry["checks"]  # an emulated device's latency gates nothing
        if entry["precision"] == "fp32":  # FP32 on ARM: the host's answers, image by image
            assert check["same_answers"] == 1.0
            assert entry["accuracy"]["top1"] == hosts["fp32"]["accuracy"]["top1"]
        else:  # INT8: ARM's kernels round otherwise; within noise of the host's
            assert check["same_answers"] >= 0.9
    assert "emulated" in md.read_text()


def test_the_managed_env_there_has_no_torch(arm_lab: Path, arm_artifacts: list[Path]) -> None:
    from edgetl.stages.lab.labfile import read_lab
    from edgetl.stages.lab.remote import Remote

    lab = read_lab(arm_lab)
    remote = Remote("arm64", lab.devices["arm64"], lab)
    remote.prepare({"onnxruntime"})
    script = "import importlib.util as u; print([m for m in ('torch', 'onnx') if u.find_spec(m)])"
    found = remote.ssh.check([remote.python, "-c", script], "looking for torch")
    assert found.strip() == "[]"


def test_down_stops_it_and_up_brings_it_back(arm_lab: Path) -> None:
    assert arm_device.main(["down"]) == 0
    assert arm_device.status()["running"] is False
    assert arm_device.main(["up", "--lab", str(arm_lab), "--workdir", TEST_WORKDIR]) == 0
    assert arm_device.status()["running"] is True
    assert shutil.which("ssh") is not None


def test_a_pte_on_arm64_gives_pytorchs_answers_where_torch_is_there(
    arm_lab: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """ExecuTorch's Python runtime links libtorch, and PyPI's aarch64 torch is ~5.9 GB there
    (8-9 min under emulation): this runs where the device's env has it already (made once
    by tools/bench_arm.py), and skips elsewhere, saying so."""
    pytest.importorskip("executorch.runtime", reason="pip install 'edgetl[executorch]'")
    from edgetl.stages.lab.labfile import read_lab
    from edgetl.stages.lab.remote import Remote

    torch_lab = tmp_path / "devices.toml"  # the workdir tools/bench_arm.py gives torch
    assert arm_device.main(["up", "--lab", str(torch_lab)]) == 0
    lab = read_lab(torch_lab)
    facts = Remote("arm64", lab.devices["arm64"], lab).probe()
    if "torch" not in facts.packages:
        pytest.skip("the arm64 device's env has no torch (5.9 GB): run tools/bench_arm.py once")
    pte = tmp_path / "pte"
    made = export_cli(tiny_run, pte, "--target", "arm-cpu", "--precision", "fp32")
    assert made.exit_code == 0, made.output
    host, lab_json = tmp_path / "host.json", tmp_path / "lab.json"
    assert cli("bench", pte, "--iterations", 10, "--json", host).exit_code == 0
    result = cli("bench", pte, "--on", "arm64", "--lab", torch_lab, "--iterations", 10,
                 "--baseline", host, "--json", lab_json)  # fmt: skip
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(lab_json.read_text())["devices"][0]["report"]["results"]
    assert entry["backend"] == "executorch" and entry["env"]["machine"] == "aarch64"
    assert entry["accuracy"]["agreement"] == 1.0  # PyTorch's FP32 answers (the reference set)
    assert entry["checks"]["accuracy"]["same_answers"] == 1.0  # and the x86 host's
