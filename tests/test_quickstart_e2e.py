"""End to end on the real offline default: digits + efficientnet_lite0 -> cpu fp32 and int8
-> bench."""

from __future__ import annotations

import json
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
    fp32, int8 = report["results"]
    test_size = run["data"]["sizes"]["test"]
    assert fp32["accuracy"]["n"] == int8["accuracy"]["n"] == test_size
    assert fp32["accuracy"]["top1"] >= 0.95
    assert fp32["accuracy"]["agreement"] == 1.0
    assert "cpu-fp32" in result.output and "cpu-int8" in result.output  # the final table
    assert all(f"{step}/4 " in result.output for step in (1, 2, 3, 4))  # four steps, numbered

    # INT8: the guard decided on val; on test it stays within the budget plus sampling noise.
    manifest = load_manifest(out / "run" / "export" / "cpu-int8")
    quant = manifest["quantization"]
    assert quant["drop_pts"] <= 1.0 and quant["n"] == run["data"]["sizes"]["val"]
    assert manifest["accuracy"]["test"]["n"] == test_size
    assert_test_drop_within_noise(manifest)
    assert set(quant["speed_here"]) == {"fp32_p50_ms", "int8_p50_ms", "ratio"}
    test = manifest["accuracy"]["test"]
    assert_test_drop_within_noise(
        {"quantization": quant, "accuracy": {"test": {**test, "drop_pts": 100 * (
            fp32["accuracy"]["top1"] - int8["accuracy"]["top1"])}}}
    )  # fmt: skip
    assert int8["size_mb"] <= 0.35 * fp32["size_mb"]
    assert_integer_convolutions(out / "run" / "export" / "cpu-int8", tmp_path, quant)

    again = CliRunner().invoke(main, ["quickstart", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output


def assert_integer_convolutions(artifact: Path, tmp_path: Path, quant: dict) -> None:
    """Every convolution not kept float runs as an integer kernel in ONNX Runtime."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(artifact / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    kept_float = len(quant["float_layers"])
    assert ops.count("QLinearConv") >= 49 - kept_float  # efficientnet_lite0 has 49
    assert ops.count("Conv") + ops.count("FusedConv") <= kept_float
