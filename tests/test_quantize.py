"""INT8 export: recipes, calibration sets, engines, QDQ surgery and the CLI around them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from edgetl.backends.base import run_all
from edgetl.backends.onnxruntime.rewrites import for_onnxruntime
from edgetl.backends.onnxruntime.runtime import OrtRunner
from edgetl.cli import main
from edgetl.core.data.splitting import stratified_sample
from edgetl.core.errors import EdgetlError
from edgetl.quantize import qdq
from edgetl.quantize.calibration import from_run
from edgetl.quantize.engines import ENGINES, float_node_names, prepare
from edgetl.quantize.recipes import list_recipes, load_recipe
from edgetl.train.model import load_run
from tests.conftest import TINY_BUDGET, export_cli, load_manifest, make_image


@pytest.fixture(scope="module")
def int8_export(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("int8") / "cpu-int8"
    result = export_int8(tiny_run, out, "--calib-samples", "32")
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def prepared(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny run exported to FP32 ONNX and prepared for quantization, with calibration data."""
    from edgetl.train.onnx_export import export_onnx

    work = tmp_path_factory.mktemp("prepared")
    run = load_run(tiny_run)
    export_onnx(run.classifier(), run, work / "fp32.onnx", 17)
    model = prepare(work / "fp32.onnx", work / "prepared.onnx")
    calib = from_run(run, run.splits(), 40, 0)
    return model, calib.images


def logits(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    return run_all(OrtRunner(model.SerializeToString(), 0), images)


def test_shipped_recipes_parse() -> None:
    names = {recipe.name for recipe in list_recipes()}
    assert {"nncf-mixed", "ort-minmax", "ort-entropy"} <= names
    assert load_recipe("nncf-mixed").float_layers == ("^/head/",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name="x"\nengine="nncf"\nmethod="entropy"', "method 'entropy' is unknown for engine"),
        ('name="x"\nengine="tflite"\nmethod="minmax"', "engine 'tflite' is unknown"),
        ('name="x"\nengine="nncf"\nmethod="minmax"\nfloat_layers=["(["]', "float_layers"),
        ('name="x"\nengine="nncf"', "missing key 'method'"),
        ('name="x"\nengine="nncf"\nmethod="minmax"\nbias_correction="slow"', "bias_correction"),
        ('name="x"\nengine="nncf"\nmethod="minmax"\nper_chanel_weights=true', "per_chanel_weights"),
        ('name="x"\nengine="nncf"\nmethod="minmax"\n[guard]\nmax_float=3', "guard.max_float"),
    ],
)
def test_bad_recipes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    with pytest.raises(EdgetlError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_recipe(str(path))


def test_stratified_sample_keeps_class_shares_and_is_seeded() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    picked = stratified_sample(labels, 10, seed=3)
    assert np.bincount(labels[picked]).tolist() == [5, 3, 2]
    assert np.array_equal(picked, stratified_sample(labels, 10, seed=3))
    assert not np.array_equal(picked, stratified_sample(labels, 10, seed=4))
    assert len(stratified_sample(labels, 500, seed=0)) == 100


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engines_quantize_and_ort_fuses_them(prepared, engine: str, tmp_path: Path) -> None:
    model, calib = prepared
    recipe = load_recipe("nncf-mixed" if engine == "nncf" else "ort-minmax")
    raw = ENGINES[engine](model, calib, recipe, float_node_names(model, recipe))
    ops = {node.op_type for node in raw.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The recipe keeps the head float: its Gemm reads the float weight initializer.
    gemm = next(n for n in raw.graph.node if n.op_type == "Gemm")
    assert gemm.input[1] == "head.net.1.weight"
    assert "head.net.1.weight" in {i.name for i in raw.graph.initializer}

    friendly = for_onnxruntime(raw)
    reference, rewritten = logits(raw, calib), logits(friendly, calib)
    # Lossless: the same grid of values, only the integer type and redundant clips change.
    assert np.array_equal(reference, rewritten), np.abs(reference - rewritten).max()

    # ORT fuses DQ -> Conv -> Q into QLinearConv; the rewrite must enable more of that (the
    # tiny model's SiLU keeps some Convs float; with lite0's ReLU6 all fuse, see e2e test).
    assert fused_convs(friendly, tmp_path) > 0
    assert fused_convs(friendly, tmp_path) >= fused_convs(raw, tmp_path)


def fused_convs(model: onnx.ModelProto, tmp_path: Path) -> int:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    return sum(node.op_type == "QLinearConv" for node in graph.node)


def test_keep_float_restores_original_weights(prepared) -> None:
    model, calib = prepared
    recipe = load_recipe("ort-minmax")
    raw = ENGINES["onnxruntime"](model, calib, recipe, float_node_names(model, recipe))
    layers = qdq.quantized_nodes(raw)
    fp32 = logits(model, calib)
    one = qdq.keep_float(raw, model, layers[:1])
    node = next(n for n in one.graph.node if n.name == layers[0])
    original = next(n for n in model.graph.node if n.name == layers[0])
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in one.graph.initializer}
    originals = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert np.array_equal(inits[node.input[1]], originals[original.input[1]])
    error_raw = np.abs(logits(raw, calib) - fp32).mean()
    error_all = np.abs(logits(qdq.keep_float(raw, model, layers), calib) - fp32).mean()
    assert error_all < error_raw


def test_int8_export_records_guard_and_calibration(int8_export, tiny_run: Path) -> None:
    out, output = int8_export
    manifest = load_manifest(out)  # checksums verified
    assert manifest["precision"] == "int8"
    quant = manifest["quantization"]
    assert quant["recipe"]["name"] == "nncf-mixed"
    assert quant["recipe"]["source"] == "calibration/nncf-mixed.toml"
    calib = quant["calibration"]
    assert calib["count"] == 32 and len(calib["files"]) == 32 and calib["seed"] == 0
    train = set(json.loads((tiny_run / "edgetl.json").read_text())["classes"])
    assert {f.split("/")[0] for f in calib["files"]} == train  # stratified: every class
    assert quant["drop_upper_pts"] <= quant["budget_pts"] == 50.0
    assert quant["rule"] == "paired-bound" and quant["confidence"] == 0.9
    assert quant["drop_upper_pts"] == quant["attempts"][-1]["drop_upper_pts"]
    assert quant["attempts"][-1]["verdict"] == "within budget"
    assert "flips" not in quant["attempts"][-1]  # the default rule counts none
    assert quant["attempts"][-1]["top1"] == quant["int8_top1"]
    # Reported beside the guard's val numbers: FP32 and INT8 on the test split, stored once.
    test = manifest["accuracy"]["test"]
    assert test["n"] == json.loads((tiny_run / "edgetl.json").read_text())["data"]["sizes"]["test"]
    assert test["drop_pts"] == pytest.approx(100 * (test["fp32_top1"] - test["top1"]), abs=1e-4)
    assert "test" not in quant and 0 <= test["agreement"] <= 1
    # The evidence behind each drop: discordant images and the 90% bound
    # (core/measures/evidence.py).
    for attempt in quant["attempts"]:
        n, worse, better = quant["n"], attempt["worse"], attempt["better"]
        assert attempt["drop_pts"] == pytest.approx(100 * (worse - better) / n, abs=1e-4)
        assert attempt["drop_upper_pts"] >= attempt["drop_pts"] and attempt["confidence"] == 0.9
    assert test["drop_pts"] == pytest.approx(
        100 * (test["worse"] - test["better"]) / test["n"], abs=1e-4
    )
    assert 0 <= quant["agreement"] <= 1 and quant["max_abs_diff"] >= 0
    assert manifest["parity"]["max_abs_diff"] <= 1e-3  # the artifact is the model measured
    assert "the recipe asks for 300" in " ".join(output.split())  # fewer than the recipe
    speed = quant["speed_here"]  # said either way: the tiny model's INT8 may not pay off
    assert ("pays off" in output) == speed["pays_off"] and "p50 here" in output
    graph = onnx.load(str(out / "model.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    assert {p.key for p in graph.metadata_props} >= {"edgetl.classes", "edgetl.precision"}


def test_int8_calibration_is_reproducible(tiny_run: Path) -> None:
    run = load_run(tiny_run)
    splits = run.splits()
    first, second = from_run(run, splits, 20, 7), from_run(run, splits, 20, 7)
    assert first.files == second.files and np.array_equal(first.images, second.images)
    assert from_run(run, splits, 20, 8).files != first.files


def test_bench_shows_int8_next_to_fp32(int8_export, tiny_run: Path, tmp_path: Path) -> None:
    fp32 = tmp_path / "fp32"
    cli = CliRunner()
    assert (
        cli.invoke(main, ["export", str(tiny_run), "--target", "cpu", "--out", str(fp32)]).exit_code
        == 0
    )
    report_path = tmp_path / "bench.json"
    data = json.loads((tiny_run / "edgetl.json").read_text())["data"]["source"]
    result = cli.invoke(
        main,
        [
            "bench",
            str(fp32),
            str(int8_export[0]),
            "--data",
            data,
            "--iterations",
            "5",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    entries = json.loads(report_path.read_text())["results"]
    assert [e["precision"] for e in entries] == ["fp32", "int8"]
    assert entries[1]["size_mb"] < 0.6 * entries[0]["size_mb"]
    # The INT8 row states its drop on these (test) images with its interval, beside the
    # budget and the guard's bound on val; the FP32 row has none.
    (promise,) = [n for n in entries[1]["notes"] if n.startswith("INT8 vs FP32 on ")]
    assert "interval" in promise and "budget 50.00" in promise and "bound on val" in promise
    assert not any(n.startswith("INT8 vs FP32") for n in entries[0]["notes"])


def export_int8(run: Path, out: Path, *args: str) -> Result:
    """INT8 of the tiny run: its 12 val images certify a 22-point drop at best, so these
    wiring tests give the guard a budget it can meet (the rule is test_guard_decision.py's,
    on lite0 test_int8_e2e.py's)."""
    budget = [] if "--max-accuracy-drop" in args else list(TINY_BUDGET)
    return export_cli(run, out, "--target", "cpu", "--precision", "int8", *budget, *args)


def write_calib(root: Path, names: list[str], count: int) -> Path:
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / names[index % len(names)] if names else root
        folder.mkdir(parents=True, exist_ok=True)
        make_image(rng, index % 3, (64, 64)).save(folder / f"{index}.png")
    return root


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "no such directory"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no images"),
        (
            lambda p: write_calib(p / "strangers", ["dogs", "class_0"], 40),
            "['dogs'] are not classes",
        ),
        (lambda p: write_calib(p / "few", ["class_0", "class_1"], 10), "only 10 images"),
        (lambda p: write_calib(p / "flat", [], 10), "only 10 images"),
    ],
)
def test_bad_calibration_data_exits_2_and_writes_nothing(
    tiny_run: Path, tmp_path: Path, make, message: str
) -> None:
    calib = make(tmp_path)
    out = tmp_path / "out"
    result = export_int8(tiny_run, out, "--calib-data", str(calib))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_calibration_array_with_wrong_image_size_exits_2(tiny_run: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "calib.npy"
    np.save(wrong, np.zeros((40, 3, 32, 32), np.float32))
    out = tmp_path / "out"
    result = export_int8(tiny_run, out, "--calib-data", str(wrong))
    assert result.exit_code == 2 and "expected (N, 3, 64, 64)" in result.output
    assert not out.exists()


def test_calibration_from_a_directory_of_class_folders(tiny_run: Path, tmp_path: Path) -> None:
    calib = write_calib(tmp_path / "calib", ["class_0", "class_1", "class_2"], 36)
    Image.new("RGB", (64, 64)).save(calib / "loose.png")  # flat files are fine too
    out = tmp_path / "out"
    result = export_int8(tiny_run, out, "--calib-data", str(calib), "--max-accuracy-drop", "100")
    assert result.exit_code == 0, result.output
    recorded = load_manifest(out)["quantization"]["calibration"]
    assert recorded["source"] == str(calib) and recorded["count"] == 37
    assert "loose.png" in recorded["files"]


@pytest.mark.parametrize("hidden", [0, 8])
def test_head_refit_writes_the_new_head_into_the_graph(
    tiny_weights: Path, tmp_path: Path, hidden: int
) -> None:
    """The re-fitted head (linear or MLP) replaces the graph's head weights exactly."""
    import torch

    from edgetl.quantize.guard.refit import features_model, with_head
    from edgetl.stages.finetune import FinetuneOptions, finetune
    from edgetl.train.model import Head
    from edgetl.train.onnx_export import export_onnx
    from tests.conftest import TINY_BACKBONE, write_folder

    run_dir = tmp_path / "run"
    finetune(
        FinetuneOptions(
            data=str(write_folder(tmp_path / "photos", per_class=6)),
            out=run_dir,
            backbone=TINY_BACKBONE,
            weights=tiny_weights,
            image_size=64,
            epochs=2,
            hidden=hidden,
        )
    )
    run = load_run(run_dir)
    export_onnx(run.classifier(), run, tmp_path / "model.onnx", 17)
    model = onnx.load(str(tmp_path / "model.onnx"))
    images = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    features = logits(features_model(model), images)

    torch.manual_seed(1)
    head = Head(features.shape[1], len(run.classes), hidden).eval()
    head.set_feature_stats(torch.from_numpy(features) * 2 + 1)
    with torch.inference_mode():
        expected = head(torch.from_numpy(features)).numpy()
    assert np.allclose(logits(with_head(model, head), images), expected, atol=1e-4)


def test_keep_float_never_reads_past_a_clip_the_quantizer_removed() -> None:
    """ORT's quantizer folds Conv -> Clip into the next quantizer and gives the Conv the Clip's
    output name; a float consumer must then keep its quantized input, not read the unclipped
    tensor that now carries the Clip's name."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(2, 4, 3, 3)).astype(np.float32), "w2")
    lo = numpy_helper.from_array(np.array(0.0, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(6.0, np.float32), "hi")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w1"], ["c1"], name="conv1", pads=[1] * 4),
            helper.make_node("Clip", ["c1", "lo", "hi"], ["act"], name="clip"),
            helper.make_node("Conv", ["act", "w2"], ["logits"], name="conv2", pads=[1] * 4),
        ],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 8, 8])],
        [w1, w2, lo, hi],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    calib = (3 * rng.normal(size=(40, 3, 8, 8))).astype(np.float32)
    recipe = load_recipe("ort-minmax")
    raw = ENGINES["onnxruntime"](model, calib, recipe, [])

    floated = qdq.keep_float(raw, model, ["conv2"])
    producers = {out: node for node in floated.graph.node for out in node.output}
    conv2 = next(node for node in floated.graph.node if node.name == "conv2")
    clip_kept = any(node.op_type == "Clip" for node in raw.graph.node)
    if not clip_kept:  # ORT removed it: the float conv must read the (clipped) quantized input
        assert producers[conv2.input[0]].op_type == "DequantizeLinear"
    assert conv2.input[1] == "w2"  # float weights back
    # Reading the unclipped tensor errs ~17x the quantized model's mean error (measured: 31.7
    # vs 1.87 with ORT 1.32); the right input keeps it near the quantized model's (1.92).
    fp32 = logits(model, calib)
    error_raw = np.abs(logits(raw, calib) - fp32).mean()
    assert np.abs(logits(floated, calib) - fp32).mean() < 2 * error_raw


def test_int8_checks_the_fp32_onnx_against_pytorch_first(tiny_run: Path, tmp_path: Path) -> None:
    """A broken FP32 export must fail before quantization, not hide inside the INT8 drop."""
    text = (Path(__file__).parents[1] / "targets" / "cpu.toml").read_text()
    strict = tmp_path / "strict.toml"
    strict.write_text(text.replace("fp32 = { max_abs_diff = 1e-3", "fp32 = { max_abs_diff = -1.0"))
    out = tmp_path / "out"
    result = export_cli(
        tiny_run, out, "--target", str(strict), "--precision", "int8", "--calib-samples", "32",
        *TINY_BUDGET,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "FP32 ONNX model differs from PyTorch before quantization" in text
    assert "quantizing with" not in text and not out.exists()


def test_a_graph_without_an_edgetl_head_is_bad_input_not_a_failed_check() -> None:
    """ "not an edgetl model" was exit 1 (a check failed); it is the input's fault: exit 2."""
    from onnx import TensorProto, helper

    from edgetl.core.errors import EdgetlError
    from edgetl.quantize.guard.refit import features_model

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    with pytest.raises(EdgetlError, match="not an edgetl model"):
        features_model(helper.make_model(graph))


def test_the_flips_rule_counts_flips_on_training_images_the_calibration_did_not_use(
    tiny_run: Path, tmp_path: Path
) -> None:
    """--rule paired-bound+flips: the kept candidate's flips against FP32 are counted on the
    training images outside the calibration set (36 train, 32 calibrated: 4), recorded."""
    out = tmp_path / "flips"
    result = export_int8(
        tiny_run, out, "--calib-samples", "32", "--rule", "paired-bound+flips",
        "--confidence", "0.8",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    quant = load_manifest(out)["quantization"]
    assert quant["rule"] == "paired-bound+flips" and quant["confidence"] == 0.8
    kept = quant["attempts"][-1]
    assert kept["unlabelled"] == 4 and 0 <= kept["flips"] <= 4
    assert kept["flip_upper_pts"] >= 100 * kept["flips"] / 4
    text = " ".join(result.output.split())
    assert "unlabelled train images flipped" in text


def test_a_val_split_too_small_for_the_budget_exits_2_before_any_work(
    tiny_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "small"
    result = export_cli(
        tiny_run, out, "--target", "cpu", "--precision", "int8", "--max-accuracy-drop", "1"
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "val has 12 images: the smallest drop it can certify at 90% is 22.09 pts" in text
    assert "quantizing" not in text and not out.exists()
    result = export_cli(tiny_run, out, "--target", "cpu", "--confidence", "0.8")
    assert result.exit_code == 2 and "only used with --precision int8" in result.output


def test_int8_pays_off_only_when_it_is_faster_by_the_margin(prepared) -> None:
    """compare_speed on real ONNX Runtime sessions: a graph against itself (ratio ~1) does not
    pay off; against a runner that does the same work three times it does (ratio ~0.33)."""
    from edgetl.quantize.int8 import PAYS_OFF_RATIO, compare_speed, payoff_line

    runner = OrtRunner(prepared[0].SerializeToString(), 1)
    single = prepared[1][:1]

    class Once:
        def run(self, batch: np.ndarray) -> object:
            return runner.run(batch)

    class Thrice:
        def run(self, batch: np.ndarray) -> object:
            return [runner.run(batch) for _ in range(3)]

    same = compare_speed(Once(), Once(), single)
    assert not same["pays_off"] and same["ratio"] > PAYS_OFF_RATIO
    assert "does NOT pay off" in payoff_line(same)
    faster = compare_speed(Thrice(), Once(), single)
    assert faster["pays_off"] and faster["ratio_low"] <= faster["ratio"] < 0.6
    assert payoff_line(faster).endswith("pays off")
