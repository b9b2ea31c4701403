"""OpenVINO targets with the real OpenVINO runtime on this CPU."""

from __future__ import annotations

import json
from pathlib import Path

import openvino as ov
import pytest
from click.testing import CliRunner

from edgetl.cli import main
from tests.conftest import TINY_BUDGET, export_cli, load_manifest


@pytest.mark.parametrize(("precision", "max_diff"), [("fp32", 1e-3), ("fp16", 0.5), ("int8", 1e-2)])
def test_export_ir_checked_and_benchmarked(
    tiny_run: Path, tmp_path: Path, precision: str, max_diff: float
) -> None:
    out = tmp_path / f"ov-{precision}"
    # The tiny random backbone has no accuracy to keep; the guard is tested on lite0.
    budget = list(TINY_BUDGET) if precision == "int8" else []  # measured on OpenVINO
    result = export_cli(
        tiny_run, out, "--target", "openvino-cpu", "--precision", precision, *budget
    )
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)  # sha256 of model.xml and model.bin verified
    assert manifest["model_files"] == ["model.xml", "model.bin"]
    assert manifest["backend"] == "openvino" and manifest["device"] == "CPU"
    assert manifest["runtime_options"]["hint"] == "LATENCY"
    assert manifest["parity"]["max_abs_diff"] <= max_diff
    model = ov.Core().read_model(str(out / "model.xml"))
    weight_types = {
        op.get_output_element_type(0).get_type_name()
        for op in model.get_ops()
        if op.get_type_name() == "Constant"
    }
    if precision == "fp16":
        assert "f16" in weight_types
    if precision == "int8":
        assert (
            any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
            or "i8" in weight_types
        )
        assert manifest["quantization"]["artifact_top1"] == manifest["quantization"]["int8_top1"]

    report = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main, ["bench", str(out), "--iterations", "5", "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report.read_text())["results"]
    assert entry["backend"] == "openvino"
    assert entry["load_s"] > 0 and entry["first_inference_ms"] > 0
    # No --data: the artifact's reference set (here: the whole test split), measured alone.
    assert entry["accuracy"]["n"] == manifest["accuracy"]["test"]["n"]
    assert entry["accuracy"]["top1"] == pytest.approx(manifest["accuracy"]["test"]["top1"])


@pytest.mark.parametrize("target", ["openvino-gpu", "openvino-npu"])
def test_ir_for_an_absent_device_exports_here_and_runs_there(
    tiny_run: Path, tmp_path: Path, target: str
) -> None:
    """IR is device-independent: export anywhere (measured on this CPU), and the device is
    checked where the artifact runs."""
    device = target.split("-")[1].upper()
    if device in ov.Core().available_devices:
        pytest.skip(f"this machine has a {target} device")
    out = tmp_path / "out"
    result = export_cli(tiny_run, out, "--target", target, "--precision", "fp16")
    assert result.exit_code == 0, result.output
    assert f"{device} is not on this machine" in " ".join(result.output.split())
    manifest = load_manifest(out)
    assert manifest["device"] == device
    assert manifest["accuracy"]["measured_device"] == "CPU"
    if device == "NPU":
        shape = ov.Core().read_model(str(out / "model.xml")).input(0).get_partial_shape()
        assert shape.is_static
    result = CliRunner().invoke(main, ["bench", str(out), "--iterations", "2"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "is not present on this machine; OpenVINO sees: CPU" in text


def test_npu_profile_path_runs_on_cpu_with_static_shape(tiny_run: Path, tmp_path: Path) -> None:
    """The NPU profile's code path (static input shape) is the CPU's with another device string:
    run it here by pointing a copy of the NPU profile at the CPU."""
    from importlib import resources

    text = resources.files("edgetl.profiles").joinpath("openvino-npu.toml").read_text()
    profile = tmp_path / "npu-on-cpu.toml"
    profile.write_text(text.replace('device = "NPU"', 'device = "CPU"'))
    out = tmp_path / "out"
    result = export_cli(
        tiny_run, out, "--target", str(profile), "--precision", "fp16", "--dynamic-batch"
    )
    assert result.exit_code == 0, result.output
    model = ov.Core().read_model(str(out / "model.xml"))
    assert model.input(0).get_partial_shape().is_static
    assert list(model.input(0).get_shape())[0] == 1
