"""The device side (load, predict, bench of an artifact) runs with torch, timm, nncf and
scikit-learn impossible to import: a fresh interpreter with an import blocker runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import export_cli

BLOCKER = """
import sys
BLOCKED = ("torch", "torchvision", "timm", "nncf", "sklearn")
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


@pytest.fixture(scope="module")
def artifact(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("device") / "cpu-fp32"
    result = export_cli(tiny_run, out, "--target", "cpu")
    assert result.exit_code == 0, result.output
    return out


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
    from edgetl.core.reference import ReferenceSet

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
