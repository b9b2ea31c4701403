"""The device side (load, predict, bench of an ONNX Runtime or OpenVINO artifact) runs with
torch, torchvision, timm, nncf, scikit-learn and onnx impossible to import: a fresh
interpreter with an import blocker runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import export_cli

BLOCKER = """
import sys
BLOCKED = ("torch", "torchvision", "timm", "nncf", "sklearn", "onnx")
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the device side must not import it")
        return None
sys.meta_path.insert(0, Blocker())
"""


def run_blocked(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "device.py"
    script.write_text(BLOCKER + code)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )


def _export(run: Path, factory: pytest.TempPathFactory, target: str) -> Path:
    out = factory.mktemp("device") / f"{target}-fp32"
    result = export_cli(run, out, "--target", target)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module", params=["cpu", "openvino-cpu"])
def artifact(
    tiny_run: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Path:
    """An FP32 artifact of each runtime a plain device has (ONNX Runtime, OpenVINO)."""
    return _export(tiny_run, tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def onnx_artifact(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX Runtime artifact: what a Jetson's test installs run, what external data is."""
    return _export(tiny_run, tmp_path_factory, "cpu")


def test_the_blocker_blocks(tmp_path: Path) -> None:
    result = run_blocked("import torch\n", tmp_path)
    assert result.returncode != 0 and "blocked" in result.stderr


def test_load_and_predict_without_torch(artifact: Path, tiny_run: Path, tmp_path: Path) -> None:
    image = next((tiny_run.parent / "photos" / "class_1").glob("*.jpg"))
    code = f"""
import edgetl, numpy as np
model = edgetl.load({str(artifact)!r})
top = model.predict({str(image)!r}, top_k=2)
print("PRED", top[0].label, round(sum(p.probability for p in model.predict({str(image)!r})), 4))
print("LOGITS", model.logits(np.zeros((3, 3, 64, 64), np.float32)).shape)
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""
    result = run_blocked(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    label, total = lines["PRED"].split()
    assert label in {"class_0", "class_1", "class_2"} and float(total) == pytest.approx(1.0)
    assert lines["LOGITS"] == "(3, 3)"
    assert lines["LOADED"] == "[]"


def test_cli_predict_and_bench_without_torch(
    artifact: Path, tiny_run: Path, tmp_path: Path
) -> None:
    folder = tiny_run.parent / "photos" / "class_2"
    report = tmp_path / "report.json"
    code = f"""
from edgetl.cli import main
import contextlib, io
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["predict", {str(artifact)!r}, {str(folder)!r}, "--json", "--top-k", "1"])
    except SystemExit as exit:
        assert exit.code in (0, None), exit.code
open({str(tmp_path / "pred.json")!r}, "w").write(out.getvalue())
try:
    main(["bench", {str(artifact)!r}, "--iterations", "3", "--json", {str(report)!r}])
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
"""
    result = run_blocked(code, tmp_path)
    assert result.returncode == 0, result.stderr
    predictions = json.loads((tmp_path / "pred.json").read_text())
    assert len(predictions) == len(list(folder.iterdir()))
    assert all(len(p["predictions"]) == 1 for p in predictions)
    (entry,) = json.loads(report.read_text())["results"]
    # Accuracy and agreement from the artifact alone: its reference set and FP32 logits.
    assert entry["accuracy"]["agreement"] == 1.0
    assert entry["accuracy"]["n"] == 12
    assert entry["env"]["gpu"] is None or isinstance(entry["env"]["gpu"], str)


def test_predict_agrees_with_the_reference_set(artifact: Path) -> None:
    """edgetl.load(...).logits on the stored crops reproduces the stored FP32 logits."""
    import numpy as np

    import edgetl
    from edgetl.core.artifact.reference import ReferenceSet

    model = edgetl.load(artifact)
    ref = ReferenceSet.load(artifact / "reference.npz")
    logits = model.logits(model.preprocess.normalize(ref.images))
    assert np.abs(logits - ref.fp32_logits).max() < 1e-3


def test_predict_errors_name_the_culprit(artifact: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgetl.cli import main

    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for args, message in (
        ([str(tmp_path / "missing.jpg")], "missing.jpg: no such image file"),
        ([str(text)], "notes.jpg: not an image file"),
        ([str(text), "--top-k", "0"], "--top-k 0"),
    ):
        result = CliRunner().invoke(main, ["predict", str(artifact), *args])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())


def _python_310() -> str | None:
    """JetPack 6's Python: an interpreter of 3.10 on this machine (PATH or pyenv), if any."""
    import glob
    import shutil

    pyenv = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python3.10")))
    for candidate in [*pyenv, shutil.which("python3.10")]:
        works = candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True)
        if works and works.returncode == 0:
            return candidate  # (pyenv's shim on PATH fails where 3.10 is not selected)
    return None


@pytest.mark.e2e
def test_the_device_side_on_jetpack_6s_python_and_tensorrt(
    onnx_artifact: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """JetPack 6 is Python 3.10 with TensorRT 10.3: edgetl's own wheel installed there (as
    DEVICE.md says, with Polygraphy and NumPy below 2) imports its TensorRT backend against
    10.3's real bindings (stub libraries), finds nothing missing but a GPU, and loads and
    predicts a CPU artifact with torch & co. blocked."""
    from edgetl.core.artifact.selfwheel import build_wheel
    from tests import tensorrt_bindings

    python = _python_310()
    if python is None:
        pytest.skip("no Python 3.10 here (PATH or ~/.pyenv); JetPack 6's Python is untested")
    try:
        stubs = tensorrt_bindings.prepare("10.3", tmp_path.parent / "trt-stubs")
    except tensorrt_bindings.Unavailable as exc:
        pytest.skip(str(exc))
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    wheel = build_wheel(tmp_path)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    installed = subprocess.run(
        [*pip, str(wheel), "onnxruntime", "polygraphy", "numpy<2",
         tensorrt_bindings.WHEELS["10.3"]],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip(f"the index has no Python 3.10 wheels here: {installed.stderr[-200:]}")
    assert installed.returncode == 0, installed.stderr[-2000:]
    shim = tmp_path / "shim"
    (shim / "tensorrt").mkdir(parents=True)
    (shim / "tensorrt" / "__init__.py").write_text(tensorrt_bindings.SHIM)
    image = next((tiny_run.parent / "photos" / "class_1").glob("*.jpg"))
    script = tmp_path / "device.py"
    script.write_text(
        BLOCKER
        + f"""
import platform, numpy, tensorrt, edgetl
from edgetl.backends.tensorrt.runtime import TensorRtRuntime
from edgetl.backends.tensorrt import engine, build
print("PYTHON", platform.python_version(), "TRT", tensorrt.__version__, "NUMPY", numpy.__version__)
print("MISSING", TensorRtRuntime().missing())
model = edgetl.load({str(onnx_artifact)!r})
print("PREDICT", model.predict({str(image)!r}, top_k=1)[0].label)
"""
    )
    env = {"LD_LIBRARY_PATH": str(stubs), "PYTHONPATH": str(shim), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(venv / "bin/python"), str(script)], capture_output=True,
                            text=True, timeout=300, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["PYTHON"].startswith("3.10.") and "TRT 10.3.0" in lines["PYTHON"]
    assert lines["MISSING"].startswith("TensorRT imports, but")  # only the GPU is missing
    assert lines["PREDICT"] in {p.name for p in (tiny_run.parent / "photos").iterdir()}


def test_a_mismatched_torchvision_is_exit_2_saying_the_fix(tmp_path: Path) -> None:
    """torch and torchvision from different builds (a CPU-only install from another index)
    made quickstart print "internal error: ... operator torchvision::nms does not exist.
    This is a bug in edgetl" (exit 3). A torchvision that fails as that one does: exit 2
    naming both versions and the torchvision series that belongs to this torch."""
    shadow = tmp_path / "shadow" / "torchvision"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n'
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    result = subprocess.run(
        [sys.executable, "-m", "edgetl", "quickstart", "--out", str(tmp_path / "qs")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, text
    assert "do not work together (operator torchvision::nms does not exist)" in text
    assert "pip install 'torchvision==0." in text and "bug" not in text
    assert not (tmp_path / "qs").exists()


def test_an_unsupported_precision_is_refused_before_the_heavy_stack(tmp_path: Path) -> None:
    """`export --precision fp16` for a target without it took seconds to refuse, importing
    torch first; it is refused with torch & co. unimportable."""
    result = run_blocked(
        "import sys\nfrom edgetl.cli import main\n"
        "sys.argv = ['edgetl', 'export', 'no-such-run', '--target', 'cpu', '--precision', "
        "'fp16']\nmain()\n",
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "--precision fp16: target 'cpu' supports fp32, int8" in " ".join(result.stderr.split())


def test_unlisted_external_data_is_refused_without_onnx(
    onnx_artifact: Path, tmp_path: Path
) -> None:
    """The external-data check read the model with the onnx package and skipped itself where
    it was missing, which is every device: now it reads the wire format
    (core/artifact/onnx_wire.py)."""
    import shutil

    import onnx

    from edgetl.core.files import sha256_file
    from tests.test_integrity import rewrite

    art = tmp_path / "art"
    shutil.copytree(onnx_artifact, art)
    proto = onnx.load(str(art / "model.onnx"))
    onnx.save(proto, str(art / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.data", size_threshold=0)  # fmt: skip
    sha, size = sha256_file(art / "model.onnx"), (art / "model.onnx").stat().st_size
    rewrite(art, lambda d: d["files"]["model.onnx"].update(sha256=sha, bytes=size))
    code = f"""
import edgetl
try:
    edgetl.load({str(art)!r})
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""
    result = run_blocked(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "REFUSED EdgetlError" in result.stdout
    assert "'weights.data' is not a file listed in the manifest" in result.stdout
    assert "LOADED []" in result.stdout
