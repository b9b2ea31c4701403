"""End to end on the real offline default: digits + efficientnet_lite0 -> cpu fp32 and int8
-> bench."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edgetl.cli import main
from tests.conftest import assert_test_drop_within_noise, load_manifest

pytestmark = pytest.mark.e2e


def test_quickstart_on_digits_with_efficientnet_lite0(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = CliRunner().invoke(main, ["quickstart", "--out", str(out), "--iterations", "30"])
    assert result.exit_code == 0, result.output

    run = json.loads((out / "run" / "edgetl.json").read_text())
    assert run["backbone"]["name"] == "efficientnet_lite0"
    assert run["metrics"]["test_top1"] >= 0.95

    manifest = load_manifest(out / "run" / "export" / "cpu-fp32")
    assert manifest["parity"]["max_abs_diff"] <= 1e-3
    assert manifest["parity"]["agreement"] == 1.0

    # The final table is measured on the test split, which no choice was made on.
    report = json.loads((out / "report.json").read_text())
    fp32 = report["results"][0]
    test_size = run["data"]["sizes"]["test"]
    assert fp32["accuracy"]["n"] == test_size
    assert fp32["accuracy"]["top1"] >= 0.95
    assert fp32["accuracy"]["agreement"] == 1.0
    assert "cpu-fp32" in result.output  # the final table
    assert all(f"{step}/4 " in result.output for step in (1, 2, 3, 4))  # four steps, numbered

    # INT8: the guard keeps a candidate only where val shows, at 90% confidence, that it
    # loses at most 1 point. Digits' 359 val images cannot show it for any rung of this
    # model (the point-estimate rule kept one that lost 3.06 on test): the quickstart says so,
    # goes on with FP32, and names the budget val can show; that export keeps its promise.
    int8_dir = out / "run" / "export" / "cpu-int8"
    text = " ".join(result.output.split())
    if "INT8 refused" in text:
        assert not int8_dir.exists() and len(report["results"]) == 1
        asked = re.search(r"--max-accuracy-drop ([0-9.]+)", text.split("INT8 refused")[1])
        assert asked is not None and float(asked.group(1)) > 1.0
        # QAT, the guard's last rung, is skipped here (minutes on a CPU) and named instead.
        assert "QAT:" not in text and "--precision int8 --qat tries it" in text
        kept = CliRunner().invoke(
            main, ["export", str(out / "run"), "--target", "cpu", "--precision", "int8",
                   "--max-accuracy-drop", asked.group(1)],
        )  # fmt: skip
        assert kept.exit_code == 0, kept.output
    else:  # a machine whose INT8 kernels round this model closer to FP32
        assert [r["precision"] for r in report["results"]] == ["fp32", "int8"]
    manifest = load_manifest(int8_dir)
    quant = manifest["quantization"]
    assert quant["n"] == run["data"]["sizes"]["val"]
    assert manifest["accuracy"]["test"]["n"] == test_size
    assert_test_drop_within_noise(manifest)  # bound <= budget; test's interval reaches it
    # Whether INT8 paid off is this machine's timing (0.5-0.6x measured here, once 0.93x on
    # a loaded machine): the test checks the verdict follows its own record, not the clock.
    speed = quant["speed_here"]
    assert speed["pays_off_at"] == 0.9
    assert speed["pays_off"] == (speed["ratio"] <= speed["pays_off_at"])
    assert speed["ratio_low"] <= speed["ratio"] <= speed["ratio_high"]
    size = sum((int8_dir / name).stat().st_size for name in manifest["model_files"])
    assert size <= 0.35 * fp32["size_mb"] * 1e6
    assert_integer_convolutions(int8_dir, tmp_path, quant)

    again = CliRunner().invoke(main, ["quickstart", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output


def assert_integer_convolutions(artifact: Path, tmp_path: Path, quant: dict) -> None:
    """Every convolution not kept float (or feeding one) runs as an integer kernel in ONNX
    Runtime."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(artifact / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    # A float layer's producer loses its output's Q/DQ pair too, so ONNX Runtime runs that
    # convolution in float as well (4 float layers: 6 float convolutions, 43 integer).
    kept_float = 2 * len(quant["float_layers"])
    assert ops.count("QLinearConv") >= 49 - kept_float  # efficientnet_lite0 has 49
    assert ops.count("Conv") + ops.count("FusedConv") <= kept_float
