"""Quantization-aware fine-tuning (quantize/guard/qat.py) on the tiny model with a planted
badly-scaled layer: one channel at 1e4 that nothing reads widens min-max calibration's range
of the tensor it is in, so post-training INT8 rounds every real channel there to zero."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest

from tests.conftest import export_cli, load_manifest

pytestmark = pytest.mark.e2e
BUDGET = ("--max-accuracy-drop", "30")  # 12 val images certify 22 points at best


def planted(run: Path, out: Path) -> Path:
    """A copy of `run` whose blocks.1 output has channel 0 at 1e4 (BatchNorm's shift, no
    activation after it) and blocks.2's first convolution (the only reader: stride 2, no
    residual) ignores that channel: FP32 is unchanged, INT8's one scale for the tensor is not."""
    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(run, out, ignore=shutil.ignore_patterns("export")))
    weights = copy / "backbone.safetensors"
    state = load_file(str(weights))
    state["blocks.1.0.bn2.bias"][0] = 1e4
    state["blocks.2.0.conv_exp.weight"][:, 0] = 0.0
    save_file(state, str(weights))
    info = json.loads((copy / "edgetl.json").read_text())
    info["weights"][weights.name] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (copy / "edgetl.json").write_text(json.dumps(info))
    return copy


@pytest.fixture(scope="module")
def planted_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted(tiny_run, tmp_path_factory.mktemp("qat") / "run")


def _attempts(artifact: Path) -> list[dict]:
    return load_manifest(artifact)["quantization"]["attempts"]


def _structure(artifact: Path) -> list[tuple[str, str]]:
    graph = onnx.load(str(artifact / "model.onnx")).graph
    return [(n.op_type, n.name) for n in graph.node]


def test_qat_meets_the_budget_where_ptq_of_a_planted_layer_fails(
    planted_run: Path, tmp_path: Path
) -> None:
    """export --qat: plain PTQ measured and refused, QAT measured and accepted by the same
    rule, with no float layer and the plain INT8 graph's Q/DQ structure (only its numbers
    differ)."""
    out = tmp_path / "qat"
    result = export_cli(planted_run, out, "--target", "cpu", "--precision", "int8", "--qat",
                        *BUDGET)  # fmt: skip
    assert result.exit_code == 0, result.output
    plain, qat = _attempts(out)
    assert plain["name"] == "plain" and plain["verdict"] != "within budget"
    assert plain["drop_upper_pts"] > 30
    assert qat["name"] == "QAT" and qat["qat"] and qat["verdict"] == "within budget"
    assert qat["float_layers"] == [] and qat["drop_upper_pts"] <= 30
    quant = load_manifest(out)["quantization"]
    assert quant["float_layers"] == [] and quant["drop_upper_pts"] == qat["drop_upper_pts"]
    loose = tmp_path / "plain"  # the same PTQ graph, accepted as it comes under a loose budget
    again = export_cli(planted_run, loose, "--target", "cpu", "--precision", "int8",
                       "--max-accuracy-drop", "100")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert [a["name"] for a in _attempts(loose)] == ["plain"]
    assert _structure(out) == _structure(loose)
    report = json.loads((out / "sensitivity.json").read_text())  # not ranked: QAT came first
    assert [s["name"] for s in report["path"]] == ["plain", "QAT"] and report["kept"] == "QAT"
    assert report["images"] is None and {r["precision"] for r in report["layers"]} == {"int8"}
    assert (out / "model.onnx").read_bytes() != (loose / "model.onnx").read_bytes()


def test_a_qat_jetson_bundle_keeps_tensorrts_qdq_rules(planted_run: Path, tmp_path: Path) -> None:
    """The TensorRT recipe's symmetric INT8 through QAT: TensorRT's Q/DQ rules hold on the
    learned graph, and the calibration cache (TensorRT 10's DLA route) carries its scales."""
    import numpy as np

    from edgetl.backends.tensorrt.calibration_cache import parse_cache
    from edgetl.backends.tensorrt.compiler import activation_scales
    from edgetl.backends.tensorrt.rules import violations

    out = tmp_path / "jetson"
    result = export_cli(planted_run, out, "--target", "jetson", "--precision", "int8", "--qat",
                        *BUDGET)  # fmt: skip
    assert result.exit_code == 0, result.output
    plain, qat = _attempts(out)
    assert plain["verdict"] != "within budget" and qat["verdict"] == "within budget"
    graph = onnx.load(str(out / "model.onnx"))
    assert violations(graph) == []
    _, cached = parse_cache((out / "calibration.cache").read_text())
    for name, scale in activation_scales(graph).items():
        assert cached[name] == np.float32(scale)


def test_the_sensitivity_report_ranks_the_planted_layer_first(
    planted_run: Path, tmp_path: Path
) -> None:
    """export --sensitivity ranks every quantized layer though plain INT8 was kept (a loose
    budget): the convolution reading the planted tensor first, its top-1 alone in float
    above plain INT8's; `edgetl inspect` shows the table, writes the PNG, prints the JSON."""
    from click.testing import CliRunner

    from edgetl.cli import main

    out = tmp_path / "ranked"
    result = export_cli(planted_run, out, "--target", "cpu", "--precision", "int8",
                        "--sensitivity", "--max-accuracy-drop", "100")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "sensitivity.json").read_text())
    assert report["schema"] == "edgetl.sensitivity/1" and report["metric"] == "top1"
    first = report["layers"][0]
    assert "blocks.2.0/conv_exp" in first["layer"], first
    assert first["metric"] > report["plain"] and first["precision"] == "int8"
    assert [s["name"] for s in report["path"]] == ["plain"] and report["kept"] == "plain"
    quantizable = load_manifest(out)["quantization"]
    assert len(report["layers"]) >= 10 and quantizable["float_layers"] == []
    png = tmp_path / "sens.png"
    shown = CliRunner().invoke(main, ["inspect", str(out), "--plot", str(png)])
    assert shown.exit_code == 0, shown.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "conv_exp" in shown.output and "kept: plain" in " ".join(shown.output.split())
    as_json = CliRunner().invoke(main, ["inspect", str(out), "--json"])
    assert json.loads(as_json.output)["sensitivity"] == report
    missing = CliRunner().invoke(main, ["inspect", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "manifest.json" in missing.output


def test_mixed_precision_keeps_the_planted_layer_in_fp16_within_budget(
    planted_run: Path, tmp_path: Path
) -> None:
    """On an OpenVINO config that runs FP16 (openvino-cpu-fp16): the guard keeps the layer
    reading the planted tensor out of INT8, then measures it in FP16 (weights stored FP16,
    its input and output cast) and keeps that, within budget; the manifest and the report
    say float16. Without QAT (the recipe's rung comes after) the float layer is the fix."""
    out = tmp_path / "mixed"
    result = export_cli(planted_run, out, "--target", "openvino-cpu-fp16", "--precision", "int8",
                        *BUDGET)  # fmt: skip
    assert result.exit_code == 0, result.output
    quant = load_manifest(out)["quantization"]
    kept = quant["attempts"][-1]
    assert (
        kept["float16"] and kept["name"].endswith("in FP16") and kept["verdict"] == "within budget"
    )
    assert any("blocks.2.0/conv_exp" in name for name in quant["float_layers"])
    assert quant["float_precision"] == "float16" and quant["drop_upper_pts"] <= 30
    report = json.loads((out / "sensitivity.json").read_text())
    halves = {r["layer"] for r in report["layers"] if r["precision"] == "float16"}
    assert halves == set(quant["float_layers"])
    # A Jetson bundle: the same layer in FP16 in TensorRT's Q/DQ graph, its rules kept.
    from edgetl.backends.tensorrt.rules import violations

    jetson = tmp_path / "jetson"
    result = export_cli(planted_run, jetson, "--target", "jetson", "--precision", "int8",
                        *BUDGET)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_manifest(jetson)["quantization"]["float_precision"] == "float16"
    assert violations(onnx.load(str(jetson / "model.onnx"))) == []


def test_qat_weights_round_trip_through_the_graphs_int8_initializers() -> None:
    """qat_weights on a Q/DQ convolution (int8 weights, per-channel scales): the student's
    fake-quantized weight is exactly the graph's; one weight moved by one step is one int8
    value changed, written where the graph keeps it; ONNX Runtime then computes what the
    student computes."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from edgetl.quantize.guard.qat_weights import learn, weight_slots, written

    rng = np.random.default_rng(0)
    values = rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)
    scale = np.asarray([0.01, 0.02, 0.005, 0.03], np.float32)
    inits = [numpy_helper.from_array(values, "w_q"), numpy_helper.from_array(scale, "w_s"),
             numpy_helper.from_array(np.zeros(4, np.int8), "w_z")]  # fmt: skip
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x_info], [y_info], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    slots = weight_slots(model)
    assert list(slots) == ["conv"] and slots["conv"].quantized
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(values.astype(np.float32) * scale[:, None, None, None]))
    scales = {"conv": scale.astype(np.float64)}
    (weight,) = learn({"conv": conv}, scales)
    assert written(model, slots, {"conv": conv}, scales) == 0  # nothing learned: unchanged
    with torch.no_grad():
        weight[2, 1, 1, 1] += 1.2 * float(scale[2])  # past one rounding boundary
    assert written(model, slots, {"conv": conv}, scales) == 1
    stored = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w_q"))
    assert stored[2, 1, 1, 1] == values[2, 1, 1, 1] + 1 and stored.dtype == np.int8
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = conv(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, atol=1e-5)


def test_the_qat_student_computes_with_the_graphs_corrected_biases(
    planted_run: Path, tmp_path: Path
) -> None:
    """NNCF's bias correction moves the INT8 graph's biases off the module's: a student with
    the module's biases learned against errors the graph had already corrected (digits: it
    agreed with the graph on 93.9% of val images, 98.9% with the graph's biases). With the
    graph's weights, biases and input ranges the student computes the graph's logits. (NNCF
    left the tiny model's biases as they were: a correction is planted in one.)"""
    import numpy as np
    import torch
    from onnx import numpy_helper

    from edgetl.backends.base import run_all
    from edgetl.backends.onnxruntime.runtime import OrtRunner
    from edgetl.quantize.guard import qat_graph
    from edgetl.quantize.guard.qat import _fake_quant
    from edgetl.train.model import load_run

    out = tmp_path / "plain"
    result = export_cli(planted_run, out, "--target", "cpu", "--precision", "int8",
                        "--max-accuracy-drop", "100")  # fmt: skip
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out / "model.onnx"))
    made = {output for node in model.graph.node if node.op_type == "DequantizeLinear"
            for output in node.output}  # fmt: skip
    convs = [node for node in model.graph.node if node.op_type == "Conv" and node.input[1] in made]
    bias = next(i for i in model.graph.initializer if i.name == convs[len(convs) // 2].input[2])
    shifted = numpy_helper.to_array(bias) + 0.05  # a correction as NNCF's moves a bias
    bias.CopyFrom(numpy_helper.from_array(shifted.astype(np.float32), bias.name))
    onnx.save(model, str(tmp_path / "corrected.onnx"))
    run = load_run(planted_run)
    images = run.splits().val.arrays(run.preprocess)
    graph = run_all(OrtRunner(tmp_path / "corrected.onnx", 0), images)

    def student_gap(graph_biases: bool) -> float:
        """The student QAT starts from (qat_graph.graph_student) against the graph; without
        the graph's biases: the module's own."""
        if graph_biases:
            built = qat_graph.graph_student(run, model, images[:1])
            student, convs = built.model, built.convs
        else:
            student = run.classifier()
            convs = qat_graph.aligned_convs(student, model, images[:1])
            qat_graph.with_graph_weights(model, convs)
        hooks = [convs[name].register_forward_pre_hook(
                     _fake_quant(q, torch.tensor(np.log(q.scale)), q.zero_point))
                 for name, q in qat_graph.conv_input_quantizers(model).items()]  # fmt: skip
        with torch.inference_mode():
            logits = student.eval()(torch.from_numpy(images).float()).numpy()
        for hook in hooks:
            hook.remove()
        return float(np.abs(logits - graph).mean() / np.abs(graph).mean())

    # what is left: the Q/DQ pairs QAT does not model (adds, the SE's) clip the moved values
    near, far = student_gap(True), student_gap(False)
    assert near < far / 10, (near, far)

    # learned biases go back into the graph: none learned, none moved; one BatchNorm's shift
    # moved by 0.05 is that convolution's graph bias moved by 0.05 (what ONNX Runtime runs)
    built = qat_graph.graph_student(run, model, images[:1])
    before = {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    assert built.biases.written(model) < 1e-5
    slot = next(s for s in built.biases.slots.values() if s.norm is not None)
    with torch.no_grad():
        slot.norm.bias[0] += 0.05
    assert built.biases.written(model) == pytest.approx(0.05, abs=1e-5)
    after = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    moved = [key for key in before if not np.allclose(before[key], after[key], atol=1e-6)]
    assert moved == [slot.initializer]
    assert after[slot.initializer][0] == pytest.approx(before[slot.initializer][0] + 0.05, 1e-5)
