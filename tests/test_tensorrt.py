"""TensorRT bundles: everything up to the engine is real here (validator, Q/DQ rewrite,
calibration cache, bundle, host-proxy accuracy); the engine build and runner need TensorRT,
whose libraries are not on PyPI, and run where it is installed."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgetl.backends.tensorrt.calibration_cache import parse_cache, write_cache
from edgetl.backends.tensorrt.compiler import activation_scales
from edgetl.backends.tensorrt.rules import to_tensorrt, violations
from edgetl.backends.tensorrt.runtime import tensorrt_available
from edgetl.cli import main
from edgetl.core.artifact.selfwheel import wheel_name
from tests.conftest import TINY_BUDGET, export_cli, load_manifest

NO_TENSORRT = "TensorRT is not installed here (its libraries are not on PyPI); runs on a device"


def qdq_conv(
    zero_dtype=np.int8, zero=0, weight_scales=4, integer_op: bool = False
) -> onnx.ModelProto:
    """images -> Q -> DQ -> Conv(DQ(int8 weights)) -> logits, with knobs to break each rule."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(zero, zero_dtype), "z"),
        numpy_helper.from_array(rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.full(weight_scales, 0.01, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(weight_scales, np.int8), "w_z"),
    ]
    axis = [helper.make_attribute("axis", 0)] if weight_scales > 1 else []
    w_dq = helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="w_dq")
    w_dq.attribute.extend(axis)
    nodes = [
        helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"], name="in_q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["x"], name="in_dq"),
        w_dq,
        helper.make_node("Conv", ["x", "w"], ["logits"], name="conv", pads=[1] * 4),
    ]
    if integer_op:
        nodes.append(helper.make_node("QLinearConv", ["q", "s", "z", "w_q", "w_s", "w_z", "s",
                                                      "z"], ["extra"], name="qconv"))  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_validator_accepts_symmetric_int8_per_channel() -> None:
    assert violations(qdq_conv()) == []


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (qdq_conv(zero=3), "in_q (QuantizeLinear): non-zero zero-point [3]"),
        (qdq_conv(zero_dtype=np.uint8), "in_q (QuantizeLinear): uint8 zero-point"),
        (qdq_conv(integer_op=True), "qconv (QLinearConv): integer operators"),
    ],
)
def test_validator_names_every_offending_node(model: onnx.ModelProto, message: str) -> None:
    found = violations(model)
    assert any(message in line for line in found), found


def test_per_tensor_weight_scales_are_advice_not_an_error() -> None:
    """TensorRT builds per-tensor weight scales; the validator rejected them."""
    from edgetl.backends.tensorrt.rules import advisories

    model = qdq_conv(weight_scales=1)
    assert violations(model) == []
    assert any("conv (Conv): weights quantized per-tensor" in line for line in advisories(model))


def test_validator_wants_opset_13() -> None:
    model = qdq_conv()
    model.opset_import[0].version = 12
    assert any("opset 12" in line for line in violations(model))


def test_uint8_with_zero_point_0_becomes_int8_over_the_same_range() -> None:
    import onnxruntime as ort

    model = qdq_conv(zero_dtype=np.uint8)
    images = np.abs(np.random.default_rng(1).normal(size=(1, 3, 8, 8))).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"images": images})[0]
    rewritten = to_tensorrt(model)
    assert violations(rewritten) == []
    after = ort.InferenceSession(rewritten.SerializeToString()).run(None, {"images": images})[0]
    # Same range, half the resolution: each input moves by at most one new step (0.02 *
    # 255/127), so each output by at most that times the sum of its |weights|.
    weights = numpy_helper.to_array(rewritten.graph.initializer[2]).astype(np.float32) * 0.01
    bound = 0.02 * 255 / 127 * np.abs(weights).sum(axis=(1, 2, 3)).max()
    assert 0 < np.abs(after - before).max() <= bound


def test_calibration_cache_round_trips() -> None:
    scales = {"images": 0.0123, "/backbone/act:0": 1.5e-3}
    header, parsed = parse_cache(write_cache(scales, 10000))
    assert header == "TRT-10000-EntropyCalibration2"
    assert parsed == pytest.approx(scales, rel=1e-6)


@pytest.fixture(scope="module")
def bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("trt") / "jetson-int8"
    result = export_cli(
        tiny_run, out, "--target", "jetson", "--precision", "int8", "--calib-samples", "32",
        "--archive", *TINY_BUDGET,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, " ".join(result.output.split())


def test_int8_bundle_passes_the_validator_and_verifies(bundle: tuple[Path, str]) -> None:
    out, output = bundle
    assert "target jetson is an alias: exporting for jetson-orin-nano" in output
    manifest = load_manifest(out)  # every sha256 verified
    assert (manifest["target"], manifest["backend"]) == ("jetson-orin-nano", "tensorrt")
    assert manifest["host_proxy"] == "onnxruntime"
    assert manifest["accuracy"]["measured_on"] == "onnxruntime"
    assert manifest["quantization"]["recipe"]["name"] == "tensorrt-int8"
    assert manifest["quantization"]["speed_here"] == {}  # ORT's speed says nothing of TensorRT
    assert "speed is measured on the device (tensorrt)" in output
    assert set(manifest["files"]) == {
        "model.onnx", "model.fp32.onnx", "calibration.cache", "DEVICE.md", "reference.npz",
        "sensitivity.json",
        wheel_name(),
    }  # fmt: skip
    assert violations(onnx.load(str(out / "model.onnx"))) == []
    # The guard held its budget on val; the test split is reported beside it.
    assert manifest["quantization"]["drop_pts"] <= 1.0
    assert manifest["accuracy"]["test"]["n"] == 12 and "test" not in manifest["quantization"]
    with tarfile.open(out.parent / "jetson-int8.tar.gz") as tar:
        assert "jetson-int8/manifest.json" in tar.getnames()


def test_bundle_calibration_cache_matches_the_qdq_scales(bundle: tuple[Path, str]) -> None:
    out, _ = bundle
    header, parsed = parse_cache((out / "calibration.cache").read_text())
    assert header.startswith("TRT-") and header.endswith("-EntropyCalibration2")
    qdq = activation_scales(onnx.load(str(out / "model.onnx")))
    assert parsed.keys() == qdq.keys() and len(parsed) > 5
    for name, scale in qdq.items():
        assert parsed[name] == np.float32(scale)
    fp32_tensors = {name for node in onnx.load(str(out / "model.fp32.onnx")).graph.node
                    for name in node.output} | {"images"}  # fmt: skip
    assert set(parsed) <= fp32_tensors  # names of the FP32 graph TensorRT 10 calibrates


def test_device_doc_gives_build_bench_and_trtexec(bundle: tuple[Path, str]) -> None:
    """Orin Nano: JetPack 6's TensorRT 10.3 only; trtexec by its JetPack path; a venv that
    sees JetPack's system TensorRT; tomli for Python 3.10."""
    doc = (bundle[0] / "DEVICE.md").read_text()
    assert "edgetl build ." in doc and "edgetl bench ." in doc and "tar xzf" in doc
    assert "/usr/src/tensorrt/bin/trtexec --onnx=model.onnx" in doc and "--int8 --fp16" in doc
    assert "TensorRT 11" not in doc and "--stronglyTyped" not in doc
    assert "--system-site-packages" in doc and "tomli" in doc


def test_dla_int8_bundle_builds_from_fp32_and_the_cache_on_10(tiny_run: Path, tmp_path) -> None:
    """DLA runs no Q/DQ layers: TensorRT 10 builds INT8 for it from the FP32 graph and the
    calibration cache; TensorRT 11.4.1 (AGX Orin, JetPack 7.2.2+) is strongly typed on DLA
    too: the pre-quantized Q/DQ graph sets INT8 there, with no precision flags."""
    out = tmp_path / "agx"
    result = export_cli(
        tiny_run, out, "--target", "jetson-agx-orin", "--precision", "int8",
        "--calib-samples", "32", "--max-accuracy-drop", "100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = (out / "DEVICE.md").read_text()
    assert (
        "--onnx=model.fp32.onnx --memPoolSize=workspace:1024M --useDLACore=0 --allowGPUFallback "
        "--int8 --fp16 --calib=calibration.cache --saveEngine=model.engine" in doc
    )
    line_11 = doc.split("# TensorRT 11.x")[1].splitlines()[1]
    assert "--onnx=model.onnx" in line_11 and "--useDLACore=0 --allowGPUFallback" in line_11
    assert "--int8" not in line_11 and "--calib" not in line_11
    header, _ = parse_cache((out / "calibration.cache").read_text())
    assert header == "TRT-100300-EntropyCalibration2"  # JetPack 6's TensorRT 10.3.0


def test_bench_of_a_bundle_on_a_host_uses_the_proxy(bundle: tuple[Path, str], tmp_path) -> None:
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        main, ["bench", str(bundle[0]), "--iterations", "5", "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report.read_text())["results"]
    assert any("does not represent the device" in note for note in entry["notes"])
    assert entry["accuracy"]["n"] == 12 and entry["accuracy"]["agreement"] is not None
    # What ran is recorded, and its latency is not shown beside real ones.
    assert (entry["backend"], entry["proxy_for"]) == ("onnxruntime", "tensorrt")
    text = " ".join(result.output.split())
    assert "onnxruntime (host proxy for tensorrt: accuracy only)" in text
    row = next(line for line in result.output.splitlines() if line.startswith("│ jetson"))
    assert row.count("proxy") == 3
    # A baseline made on the device cannot gate a host-proxy run (nor the reverse).
    device = json.loads(report.read_text())
    device["results"][0].update(backend="tensorrt", proxy_for="", samples_ms=[1.5] * 20)
    baseline = tmp_path / "device.json"
    baseline.write_text(json.dumps(device))
    gated = CliRunner().invoke(
        main, ["bench", str(bundle[0]), "--iterations", "5", "--baseline", str(baseline)]
    )
    assert gated.exit_code == 2, gated.output
    gated_text = " ".join(gated.output.split())
    assert "with tensorrt, here with onnxruntime as the host proxy for tensorrt" in gated_text
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(image)
    predicted = CliRunner().invoke(main, ["predict", str(bundle[0]), str(image)])
    assert predicted.exit_code == 0 and "host proxy" in predicted.output


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed: the build runs")
def test_build_without_tensorrt_exits_2(bundle: tuple[Path, str]) -> None:
    result = CliRunner().invoke(main, ["build", str(bundle[0])])
    assert result.exit_code == 2
    assert "TensorRT cannot run here" in " ".join(result.output.split())
    archive = bundle[0].parent / f"{bundle[0].name}.tar.gz"  # answered "no manifest.json here"
    result = CliRunner().invoke(main, ["build", str(archive)])
    assert result.exit_code == 2 and "TensorRT cannot run here" in " ".join(result.output.split())


def test_fp16_bundle_carries_fp32_for_10_and_fp16_typed_for_11(
    tiny_run: Path, tmp_path: Path
) -> None:
    """TensorRT 11 has no FP16 flag: its graph must be FP16-typed (FP32 I/O), checked
    against PyTorch on the host proxy; TensorRT 10 takes the FP32 graph with --fp16."""
    out = tmp_path / "fp16"
    result = export_cli(tiny_run, out, "--target", "tensorrt-gpu", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    assert set(manifest["files"]) == {
        "model.onnx", "model.fp16.onnx", "DEVICE.md", "reference.npz", wheel_name(),
    }  # fmt: skip
    assert manifest["parity"]["max_abs_diff"] <= 1e-3  # host proxy vs PyTorch
    typed = manifest["parity"]["host_checks"]["model.fp16.onnx"]
    assert typed["passed"] and typed["agreement"] >= 0.99 and 0 < typed["max_abs_diff"] <= 0.1
    graph = onnx.load(str(out / "model.fp16.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # FP32 I/O
    assert {i.data_type for i in graph.initializer} == {TensorProto.FLOAT16}
    doc = (out / "DEVICE.md").read_text()
    assert "--onnx=model.onnx --memPoolSize=workspace:4096M --fp16" in doc  # 10
    line_11 = next(line for line in doc.splitlines() if "model.fp16.onnx" in line)
    assert "--fp16" not in line_11 and "--int8" not in line_11


def test_export_refuses_a_bundle_that_breaks_the_rules(tiny_run: Path, tmp_path: Path) -> None:
    """Asymmetric activations (the default CPU recipe) cannot become TensorRT Q/DQ."""
    out = tmp_path / "bad"
    result = export_cli(
        tiny_run, out, "--target", "jetson-orin-nano", "--precision", "int8",
        "--recipe", "nncf-mixed", "--calib-samples", "32", "--max-accuracy-drop", "100",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "breaks TensorRT's Q/DQ rules" in text and "non-zero zero-point" in text
    assert not out.exists()


@pytest.mark.skipif(not tensorrt_available(), reason=NO_TENSORRT)
def test_build_and_run_the_engine(bundle: tuple[Path, str]) -> None:  # pragma: no cover
    out, _ = bundle
    result = CliRunner().invoke(main, ["build", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "engine.json").read_text())
    assert record["parity"]["passed"] and (out / "timing.cache").is_file()
    result = CliRunner().invoke(main, ["bench", str(out), "--iterations", "20"])
    assert result.exit_code == 0, result.output
    record["tensorrt"] = "0.0.0"
    (out / "engine.json").write_text(json.dumps(record))
    result = CliRunner().invoke(main, ["bench", str(out)])
    assert result.exit_code == 2 and "rebuild with `edgetl build" in result.output


def test_build_rewrites_the_cache_header_for_the_tensorrt_found(bundle: tuple[Path, str]) -> None:
    """TensorRT ignores a cache of another version: build hands it one for its own, with the
    very scales the bundle holds."""
    from edgetl.backends.tensorrt.build import calibration_for

    out, _ = bundle
    original = (out / "calibration.cache").read_text().splitlines()
    rewritten = (calibration_for(out, "10.13.3.9") or b"").decode().splitlines()
    assert original[0] == "TRT-100300-EntropyCalibration2"
    assert rewritten[0] == "TRT-101303-EntropyCalibration2"
    assert rewritten[1:] == original[1:]


def test_the_build_command_reports_the_engine_it_wrote(tmp_path: Path, monkeypatch) -> None:
    """The CLI's summary line read record['gpu'], which the record keeps under 'device'."""
    import edgetl.backends.tensorrt.build
    from edgetl.backends.tensorrt.record import EngineDevice, EngineRecord

    def fake_build(options):  # the stage needs TensorRT; this checks the CLI's line
        options.bundle = tmp_path / "unpacked"
        return EngineRecord("10.3.0", EngineDevice(gpu="Orin", module="Jetson"))

    monkeypatch.setattr(edgetl.backends.tensorrt.build, "build", fake_build)
    result = CliRunner().invoke(main, ["build", str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 0, result.output
    expected = f"engine:{tmp_path / 'unpacked' / 'model.engine'}(10.3.0,Orin)"
    assert expected in "".join(result.output.split())  # rich may wrap the long path


def test_compare_runs_two_bundles_on_the_host_proxy_and_refuses_a_mixed_pair(
    bundle: tuple[Path, str], tiny_run: Path, tmp_path: Path
) -> None:
    """compare loads through the same placement rule as load, export and bench: two TensorRT
    bundles run on the host proxy here (said so); a proxy against a real runtime is exit 2."""
    result = CliRunner().invoke(
        main,
        ["compare", str(bundle[0]), str(bundle[0]), "--rounds", "3", "--iterations", "5",
         "--json", "--max-regression", "300"],  # the placement is under test, not the noise
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "host proxy onnxruntime" in " ".join(result.output.split())
    cpu = tmp_path / "cpu"
    assert export_cli(tiny_run, cpu, "--target", "cpu").exit_code == 0
    mixed = CliRunner().invoke(main, ["compare", str(cpu), str(bundle[0]), "--rounds", "3"])
    assert mixed.exit_code == 2, mixed.output
    text = " ".join(mixed.output.split())
    assert f"{cpu} on onnxruntime" in text
    assert f"{bundle[0]} on onnxruntime (host proxy for tensorrt)" in text
    # A report measured on the host proxy cannot be the base of an artifact run for real.
    report = tmp_path / "proxy.json"
    benched = CliRunner().invoke(
        main, ["bench", str(bundle[0]), "--iterations", "20", "--json", str(report)]
    )
    assert benched.exit_code == 0, benched.output
    mixed = CliRunner().invoke(main, ["compare", str(report), str(cpu), "--rounds", "3"])
    assert mixed.exit_code == 2, mixed.output
    text = " ".join(mixed.output.split())
    assert f"cannot compare {cpu} on onnxruntime with {report} measured on onnxruntime " in text
    assert "(host proxy for tensorrt)" in text


def _scaled_run(tiny_run: Path, out: Path, factor: float) -> Path:
    """A copy of the run whose head's logits are `factor` times larger (a confident head:
    logits spanning 15-20 as on a held-out photo set), its weight record updated."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from edgetl.core.files import sha256_file

    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("export"))
    head = load_file(str(out / "head.safetensors"))
    last = sorted(k for k in head if k.endswith(".weight") and k.startswith("net."))[-1]
    for key in (last, last.replace(".weight", ".bias")):
        head[key] = head[key] * np.float32(factor)
    save_file(head, str(out / "head.safetensors"))
    record = json.loads((out / "edgetl.json").read_text())
    record["weights"]["head.safetensors"] = sha256_file(out / "head.safetensors")
    (out / "edgetl.json").write_text(json.dumps(record))
    return out


def test_fp16_bundles_of_a_confident_head_pass_and_carry_only_their_routes(
    tiny_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An absolute 0.1 on the FP16-typed graph refused correct graphs whose logits span
    15-20 (FP16's error grows with the values it rounds); and an Orin on TensorRT 10.3 never
    builds from that graph, so its bundle neither carries nor checks it."""
    run = _scaled_run(tiny_run, tmp_path / "run", 100.0)
    out = tmp_path / "gpu"
    capfd.readouterr()
    result = export_cli(run, out, "--target", "tensorrt-gpu", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "FP16-typed graph for TensorRT 11.4.1" in text
    assert text.count("note: ONNX Runtime's CPU provider ran") == 1  # said once, in words
    raw = capfd.readouterr()  # ONNX Runtime logs from C++, past click's capture
    assert "W:onnxruntime" not in raw.err + raw.out and "\x1b[" not in raw.err
    typed = load_manifest(out)["parity"]["host_checks"]["model.fp16.onnx"]
    assert typed["passed"] and typed["max_abs_diff"] > 0.1  # the old bound refused it
    assert typed["max_rel_diff"] <= typed["tolerance"]["max_rel_diff"]
    nano = tmp_path / "nano"
    result = export_cli(run, nano, "--target", "jetson-orin-nano", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    assert not (nano / "model.fp16.onnx").exists()
    assert "host_checks" not in load_manifest(nano)["parity"]
    assert "model.fp16.onnx" not in (nano / "DEVICE.md").read_text()


def test_the_fp16_graph_tolerance_still_refuses_a_broken_graph(
    tiny_run: Path, tmp_path: Path
) -> None:
    """The relative bound is not a blank cheque: the same FP16 conversion of a graph with
    its first convolution's output channel 0 sign-flipped (still runs, mostly agrees) fails it, run
    on ONNX Runtime as export runs it; the correct conversion passes."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgetl.backends import run_all
    from edgetl.backends.onnxruntime.fp16 import quiet
    from edgetl.backends.onnxruntime.runtime import OrtRunner
    from edgetl.core.artifact.reference import ReferenceSet
    from edgetl.core.measures.parity import compare
    from edgetl.core.records import Manifest
    from edgetl.core.targets import load_target

    run = _scaled_run(tiny_run, tmp_path / "run", 40.0)
    out = tmp_path / "cpu"
    assert export_cli(run, out, "--target", "cpu", "--precision", "fp32").exit_code == 0
    manifest = Manifest.read(out)
    reference = ReferenceSet.load(out / manifest.reference.file)
    images = manifest.preprocess.normalize(reference.images)
    model = onnx.load(str(out / "model.onnx"))
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    inits = {i.name: i for i in broken.graph.initializer}
    convs = [n for n in broken.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    weights = inits[convs[0].input[1]]  # the stem: a small tiny net shrugs off a deep channel
    flipped = numpy_helper.to_array(weights).copy()
    flipped[0] = -flipped[0]
    weights.CopyFrom(numpy_helper.from_array(flipped, weights.name))
    tolerance = load_target("tensorrt-gpu").parity["fp16_graph"]
    checks = {}
    for name, graph in (("correct", model), ("broken", broken)):
        fp16 = convert_float_to_float16(graph, keep_io_types=True).SerializeToString()
        with quiet():
            logits = run_all(OrtRunner(fp16, 1), images)
        checks[name] = compare(reference.artifact_logits, logits, reference.labels, tolerance)
    assert checks["correct"].passed, checks["correct"].shortfall()
    assert not checks["broken"].passed
    # Not a near miss.
    assert checks["broken"].max_rel_diff > 2 * tolerance.max_rel_diff, checks["broken"]


def test_a_proxy_row_cites_no_latency_it_does_not_show(
    bundle: tuple[Path, str], tmp_path: Path, monkeypatch
) -> None:
    """A host-proxy row shows CV `-` (its latency says nothing of the device); a warning
    under it cited "CV 38%" all the same. A noisy proxy run: no latency warning; the row
    says `-`."""
    from edgetl.stages.bench import harness

    monkeypatch.setattr(harness, "coefficient_of_variation", lambda samples: 0.38)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        main, ["bench", str(bundle[0]), "--iterations", "5", "--no-cold", "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report.read_text())["results"]
    assert entry["proxy_for"] == "tensorrt"
    assert not any("latency varies" in note for note in entry["notes"])
    assert "CV 38%" not in " ".join(result.output.split())


def test_inspect_shows_the_engines_layers_as_tensorrts_inspector_read_them(
    bundle: tuple[Path, str], tmp_path: Path
) -> None:
    """No engine here: inspect says to build one; with the record `edgetl build` writes on
    the device, its placement per layer type, where and in which precision."""
    from edgetl.backends.tensorrt.record import ENGINE_RECORD, EngineDevice, EngineRecord
    from edgetl.cli import main

    copy = tmp_path / "bundle"
    shutil.copytree(bundle[0], copy)
    refused = CliRunner().invoke(main, ["inspect", str(copy), "--json"])
    assert "edgetl build" in refused.output
    EngineRecord("10.3.0", EngineDevice(gpu="Orin"), precision="int8",
                 layer_types={"GPU CaskConvolution int8": 17, "DLA DLA unknown": 1,
                              "GPU Reformat fp16": 2}).write(copy)  # fmt: skip
    assert (copy / ENGINE_RECORD).is_file()
    result = CliRunner().invoke(main, ["inspect", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["placement"]["rows"]
    assert {"op": "CaskConvolution", "where": "GPU", "precision": "int8", "count": 17} in rows
    assert {"op": "DLA", "where": "DLA", "precision": "unknown", "count": 1} in rows
