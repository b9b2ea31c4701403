"""A bundle installs its own device side: its edgetl wheel into a fresh venv, offline (no
index), without torch or any host dependency, as DEVICE.md says; then `edgetl build --help`
and `edgetl bench BUNDLE` (host proxy) run there."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from edgetl.core.artifact.selfwheel import wheel_name
from tests.conftest import export_cli

# The device side's requirements plus the host proxy's runtime (a Jetson has TensorRT).
DEVICE_PACKAGES = [
    "numpy",
    "pillow",
    "click",
    "rich",
    "cryptography",
    "pycocotools",
    "pyyaml",
    "onnxruntime",
]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("device-install") / "jetson-fp16"
    result = export_cli(tiny_run, out, "--target", "jetson", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    return out


def test_the_bundle_carries_its_checksummed_wheel(bundle: Path) -> None:
    import zipfile

    manifest = json.loads((bundle / "manifest.json").read_text())
    assert wheel_name() in manifest["files"]
    with zipfile.ZipFile(bundle / wheel_name()) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"edgetl-{wheel_name().split('-')[1]}.dist-info/METADATA").decode()
    carried = {"edgetl/cli/app.py", "edgetl/profiles/jetson.toml"}
    carried.add("edgetl/backends/tensorrt/runtime.py")
    assert carried <= names
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist")]
    unconditional = [line for line in required if "extra ==" not in line]
    assert not any(name in " ".join(unconditional) for name in ("torch", "timm", "nncf"))
    assert f"pip install ./{wheel_name()}" in (bundle / "DEVICE.md").read_text()


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


def test_the_device_side_installs_from_the_bundle_offline(bundle: Path, tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"  # what a device's own index or system packages provide
    fetched = run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(house),
         *DEVICE_PACKAGES]
    )  # fmt: skip
    if fetched.returncode != 0:
        pytest.skip(f"cannot fetch the device packages: {fetched.stderr.strip()[-200:]}")
    env_dir = tmp_path / "device-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    offline = [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(house)]
    installed = run([*offline, str(bundle / wheel_name()), "onnxruntime"], cwd=bundle)
    assert installed.returncode == 0, installed.stderr
    probe = "('torch', 'timm', 'nncf', 'sklearn', 'openvino')"
    absent = run([str(python), "-c", f"import importlib.util as u; print([m for m in {probe} "
                  "if u.find_spec(m)])"])  # fmt: skip
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    edgetl = str(env_dir / "bin" / "edgetl")
    helped = run([edgetl, "build", "--help"])
    assert helped.returncode == 0 and "BUNDLE" in helped.stdout, helped.stderr
    report = tmp_path / "r.json"
    benched = run([edgetl, "bench", str(bundle), "--iterations", "3", "--json", str(report)])
    assert benched.returncode == 0, benched.stderr
    (entry,) = json.loads(report.read_text())["results"]
    assert (entry["backend"], entry["proxy_for"]) == ("onnxruntime", "tensorrt")
    built = run([edgetl, "build", str(bundle)])
    assert built.returncode == 2 and "TensorRT cannot run here" in " ".join(built.stderr.split())
