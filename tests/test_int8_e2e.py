"""INT8 on the real offline default: digits + efficientnet_lite0 at 128 px, ONNX Runtime CPU."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edgetl.artifacts import load_manifest
from edgetl.cli import main


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("digits") / "run"
    result = CliRunner().invoke(
        main, ["finetune", "--data", "digits", "--image-size", "128", "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    return run


def test_int8_within_budget_smaller_and_fully_fused(digits_run: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    assert (
        cli.invoke(
            main, ["export", str(digits_run), "--target", "cpu", "--out", str(fp32)]
        ).exit_code
        == 0
    )
    result = cli.invoke(
        main,
        ["export", str(digits_run), "--target", "cpu", "--precision", "int8", "--out", str(int8)],
    )
    assert result.exit_code == 0, result.output
    quant = load_manifest(int8)["quantization"]
    assert quant["drop_pts"] <= 1.0
    assert quant["n"] == 359  # the whole validation split
    assert set(quant["speed_here"]) == {"fp32_p50_ms", "int8_p50_ms", "ratio"}
    assert (int8 / "model.onnx").stat().st_size <= 0.35 * (fp32 / "model.onnx").stat().st_size

    # Every convolution runs as an integer kernel in ONNX Runtime (that is where the speed is).
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8 / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    kept_float = len(quant["float_layers"])
    assert ops.count("QLinearConv") >= 49 - kept_float
    assert ops.count("Conv") + ops.count("FusedConv") <= kept_float


def test_guard_refuses_a_recipe_that_cannot_meet_the_budget(
    digits_run: Path, tmp_path: Path
) -> None:
    """Per-tensor ONNX Runtime INT8 loses most of digits' accuracy; with restoring disabled the
    guard must exit 1, show what it tried, and write nothing."""
    recipe = tmp_path / "per-tensor.toml"
    recipe.write_text(
        'name = "ort-per-tensor"\nengine = "onnxruntime"\nmethod = "minmax"\n'
        "per_channel_weights = false\nsamples = 64\n"
        "[guard]\nhead_refit = false\nmax_float_layers = 0\n"
    )
    out = tmp_path / "int8"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(digits_run),
            "--target",
            "cpu",
            "--precision",
            "int8",
            "--recipe",
            str(recipe),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "INT8 attempts" in text and "plain" in text
    assert "misses the accuracy budget" in text and "no artifact written" in text
    assert not out.exists()
    assert not list(tmp_path.glob(".*int8*"))  # no staging directory left behind


def test_openvino_int8_meets_the_budget_on_openvino(digits_run: Path, tmp_path: Path) -> None:
    """The guard measures candidates with the target's runtime: the IR keeps the budget there."""
    out = tmp_path / "ov-int8"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(digits_run),
            "--target",
            "openvino-cpu",
            "--precision",
            "int8",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    quant = manifest["quantization"]
    assert quant["drop_pts"] <= 1.0
    assert 100 * (quant["fp32_top1"] - quant["artifact_top1"]) <= 1.0
    assert manifest["parity"]["agreement"] >= 0.99
    size = sum((out / name).stat().st_size for name in manifest["model_files"])
    assert size <= 0.35 * 13.5e6  # the FP32 ONNX is 13.6 MB
