"""Detection through the flow (issue 27) on the tiny backbone at 64 px: finetune on a YOLO set,
export for ONNX Runtime and OpenVINO (FP32 equal to PyTorch; INT8 under the mAP guard with the
decode float), load, predict (--json, --save), bench (mAP, NMS's share, --baseline)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgetl.core.data.scenes import make_scenes
from tests.conftest import TINY_BACKBONE

SIZES = {"train": 40, "val": 24, "test": 16}
FLOOR = 0.0  # detections compared across runtimes (the padding's tied scores are dropped)


def cli(*args: str) -> Any:
    from edgetl.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    base = tmp_path_factory.mktemp("detect")
    data = make_scenes(base / "scenes", sizes=SIZES)
    out = base / "run"
    result = cli("finetune", "--data", data, "--out", out, "--backbone", TINY_BACKBONE,
                 "--weights", tiny_weights, "--image-size", 64, "--epochs", 15)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def exported(detect_run: Path) -> dict[str, Path]:
    found = {}
    for target, precision in (("cpu", "fp32"), ("openvino-cpu", "fp32"), ("cpu", "int8")):
        out = detect_run / "export" / f"{target}-{precision}"
        extra = ("--max-accuracy-drop", "50") if precision == "int8" else ()
        result = cli("export", detect_run, "--target", target, "--precision", precision, *extra)
        assert result.exit_code == 0, result.output
        found[f"{target}-{precision}"] = out
    return found


def test_the_task_is_read_from_the_layout_and_the_run_is_whole(detect_run: Path) -> None:
    info = json.loads((detect_run / "edgetl.json").read_text())
    assert info["task"] == "detect" and info["classes"] == ["cat", "coffee", "horse", "logo"]
    assert info["preprocess"]["resize"] == "letterbox" and info["preprocess"]["size"] == 64
    assert set(info["weights"]) == {"pyramid.safetensors", "detector.safetensors"}
    assert info["metrics"]["test_images"] == SIZES["test"]  # the layout's own test split
    assert (detect_run / "history.csv").read_text().count("\n") >= 2


def test_a_second_run_reads_every_pyramid_from_the_cache(
    detect_run: Path, tmp_path: Path, tiny_weights: Path
) -> None:
    import io

    from rich.console import Console

    from edgetl.core.events import reporting
    from edgetl.stages.finetune import FinetuneOptions, finetune

    source = json.loads((detect_run / "edgetl.json").read_text())["data"]["source"]
    opts = FinetuneOptions(data=source, out=tmp_path / "again", backbone=TINY_BACKBONE,
                           weights=tiny_weights, image_size=64, epochs=1)  # fmt: skip
    said = io.StringIO()
    with reporting(Console(file=said, width=400)):
        finetune(opts)
    assert "cached, 0 new" in said.getvalue(), said.getvalue()


def test_the_row_precision_is_measured_once_and_the_shards_follow_it(
    detect_run: Path, tmp_path: Path, tiny_weights: Path
) -> None:
    """The trained head's val mAP on float32 rows vs float16: recorded in both views'
    namespaces, the shards narrowed when float16 is chosen; a second run reads the record."""
    from safetensors import safe_open

    source = json.loads((detect_run / "edgetl.json").read_text())["data"]["source"]
    common = ("--data", source, "--backbone", TINY_BACKBONE, "--weights", tiny_weights,
              "--image-size", 64, "--epochs", 3, "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert cli("finetune", *common, "--out", tmp_path / "a").exit_code == 0
    rows = json.loads((tmp_path / "a" / "edgetl.json").read_text())["cache_rows"]
    assert rows["metric"] == "mAP50-95" and rows["val_images"] == SIZES["val"]
    close = abs(rows["val_top1_float32"] - rows["val_top1_float16"]) * 100 <= 0.1
    assert rows["dtype"] == ("float16" if close else "float32")
    records = sorted((tmp_path / "cache").glob("v1/*/precision.json"))
    assert len(records) == 2  # the images and train's mirrored view
    dtypes = set()
    for shard in (tmp_path / "cache").glob("v1/*/shards/*.safetensors"):
        with safe_open(str(shard), "pt") as opened:
            dtypes.add(str(opened.get_tensor("features").dtype))
    assert dtypes == {f"torch.{rows['dtype']}"}
    again = cli("finetune", *common, "--out", tmp_path / "b")
    assert again.exit_code == 0 and "chose rows" not in again.output
    assert json.loads((tmp_path / "b" / "edgetl.json").read_text())["cache_rows"] == rows


def test_the_graph_has_separate_box_and_score_outputs_and_equals_pytorch(
    detect_run: Path, exported: dict[str, Path]
) -> None:
    import edgetl
    from edgetl.core.data.detection_splits import load_detection
    from edgetl.core.images import read_image
    from edgetl.core.postprocess import detections
    from edgetl.stages.detect.run import load_detect_run, run_detector

    info = load_detect_run(detect_run)
    model = run_detector(detect_run, info)
    test = load_detection(Path(info.data.source)).test
    import torch

    compared = 0
    for name in ("cpu-fp32", "openvino-cpu-fp32"):
        artifact = edgetl.load(exported[name])
        for key, size in zip(test.keys, test.sizes, strict=True):
            image = read_image(test.root / key)
            with torch.inference_mode():
                boxes, scores = model(torch.from_numpy(info.letterbox(image)[None]))
            ours = detections(boxes[0].numpy(), scores[0].numpy(), info.nms, info.letterbox, size)
            found = [d for d in artifact.predict(image) if d.score >= FLOOR]
            assert ours.scores is not None
            kept = ours.scores >= FLOOR  # ties at the 100-detection cut are not compared
            assert len(found) == int(kept.sum()), name
            for box, label in zip(ours.boxes[kept], ours.classes[kept], strict=True):
                assert any(d.index == label and np.abs(np.subtract(d.box, box)).max() <= 1e-3
                           for d in found), (name, box, label)  # fmt: skip
            compared += len(found)
    assert compared > 0  # not two empty lists


def test_int8_keeps_the_decode_float_and_is_judged_on_map(exported: dict[str, Path]) -> None:
    artifact = exported["cpu-int8"]
    graph = onnx.load(str(artifact / "model.onnx"))
    if graph.graph.output[0].name == "det_boxes":  # NMS in the graph: boxes and scores inside
        graph = _without_nms(graph)
    producers = {out: node for node in graph.graph.node for out in node.output}
    decode = [n for n in graph.graph.node if "/decode/" in n.name]
    assert decode and any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    for node in decode:  # no decode op reads a quantized tensor
        for name in node.input:
            source = producers.get(name)
            assert source is None or source.op_type != "DequantizeLinear", node.name
    for name in ("boxes", "scores"):  # neither passes through one shared scale
        assert producers[name].op_type != "DequantizeLinear"
    manifest = json.loads((artifact / "manifest.json").read_text())
    quantization = manifest["quantization"]
    assert quantization["metric"] == "map50_95" and quantization["attempts"]
    chosen = quantization["attempts"][-1]
    assert chosen["drop_upper_pts"] <= 50 and chosen["verdict"].startswith("accepted")
    assert manifest["test"]["n"] == SIZES["test"]
    speed = quantization["speed_here"]  # FP32 vs INT8 timed here: pays off by its own rule
    assert speed["int8_p50_ms"] > 0 and speed["fp32_p50_ms"] > 0
    assert speed["ratio_low"] <= speed["ratio"] <= speed["ratio_high"]
    assert speed["pays_off"] == (speed["ratio"] <= speed["pays_off_at"])


def test_nms_runs_where_it_measured_faster(
    exported: dict[str, Path],
) -> None:
    in_graph = ["det_boxes", "det_scores", "det_classes"]
    for path in exported.values():
        manifest = json.loads((path / "manifest.json").read_text())
        choice = manifest["nms_choice"]
        faster = "graph" if choice["graph_p50_ms"] < choice["numpy_p50_ms"] else "device-numpy"
        assert manifest["nms_where"] == faster
        assert choice["agreement"] is None or 0.5 <= choice["agreement"] <= 1  # ties differ
        expected = in_graph if faster == "graph" else ["boxes", "scores"]
        assert manifest["outputs"] == expected
        if (path / "model.onnx").is_file():  # ONNX Runtime's artifact: the graph itself
            graph = onnx.load(str(path / "model.onnx"))
            assert [o.name for o in graph.graph.output] == expected


def test_predict_prints_the_schema_in_image_pixels_and_draws_the_boxes(
    exported: dict[str, Path], detect_run: Path, tmp_path: Path
) -> None:
    source = Path(json.loads((detect_run / "edgetl.json").read_text())["data"]["source"])
    images = sorted((source / "images" / "test").glob("*.png"))[:3]
    drawn = tmp_path / "drawn"
    result = cli("predict", exported["cpu-fp32"], *images, "--json", "--save", drawn)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [item["image"] for item in found] == [str(p) for p in images]
    for item in found:
        for detection in item["detections"]:
            assert set(detection) == {"box", "label", "score"}
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 320
            assert detection["label"] in ("cat", "coffee", "horse", "logo")
    assert sorted(p.name for p in drawn.iterdir()) == [f"{p.stem}.png" for p in images]
    again = cli("predict", exported["cpu-fp32"], *images, "--save", drawn)
    assert again.exit_code == 2 and "--force" in again.output


def test_bench_measures_map_and_nms_share_and_gates_a_baseline(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    artifacts = [exported["cpu-fp32"], exported["cpu-int8"]]
    result = cli("bench", *artifacts, "--iterations", 20, "--warmup", 2, "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["schema"] == "edgetl.detect-bench/1" and data["split"] == "test"
    for entry, path in zip(data["results"], artifacts, strict=True):
        manifest = json.loads((path / "manifest.json").read_text())
        assert entry["map50_95"] == pytest.approx(manifest["test"]["map50_95"], abs=1e-4)
        assert entry["nms_p50_ms"] > 0 and entry["graph_p50_ms"] > 0
    # the run's test split is the images of the artifacts' reference sets: FP32's answers
    assert data["results"][0]["agreement"] == 1.0 and 0 <= data["results"][1]["agreement"] <= 1
    worse = json.loads(report.read_text())
    worse["results"][0]["map50_95"] += 0.5  # a baseline 50 points better: a regression now
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(worse))
    written = {kind: tmp_path / f"gated.{kind}" for kind in ("md", "junit", "plot")}
    asked = [arg for kind, path in written.items() for arg in (f"--{kind}", path)]
    gated = cli(
        "bench",
        *artifacts,
        "--iterations",
        20,
        "--baseline",
        baseline,
        *asked,
        "--max-regression",
        1000,
    )  # mAP gates here; this machine's p50 is its own
    assert gated.exit_code == 1 and "below the baseline" in gated.output
    # --md, --junit and --plot are written for detectors too: the JUnit fails the FP32's mAP
    # case alone (its latency and the INT8's cases pass)
    names = [entry["name"] for entry in data["results"]]
    markdown = written["md"].read_text()
    assert all(f"| {name} |" in markdown for name in names) and "below the baseline" in markdown
    cases = ET.parse(written["junit"]).getroot().findall("testcase")
    failed = [(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None]
    assert failed == [(f"edgetl.detect.{names[0]}", "mAP regression")]
    assert {c.get("name") for c in cases} == {"runs", "mAP regression", "latency regression"}
    assert written["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # answers (score >= 0.5) compared image by image: one planted in the INT8's baseline
    planted = json.loads(report.read_text())
    planted["results"][1]["answers"][0].append([0.0, 0.0, 5.0, 5.0, 0.0, 0.99])
    baseline.write_text(json.dumps(planted))
    checked = tmp_path / "checked.json"
    result = cli("bench", *artifacts, "--iterations", 20, "--max-regression", 1000,
                 "--baseline", baseline, "--json", checked)  # fmt: skip
    assert result.exit_code == 0, result.output
    fp32, int8 = json.loads(checked.read_text())["results"]
    assert fp32["checks"]["answers"].startswith("100.0% of images answered as the baseline")
    assert f"{1 - 1 / data['results'][1]['images']:.1%}" in int8["checks"]["answers"]
    assert "(1 not" in int8["checks"]["answers"]


def test_on_its_reference_set_a_detector_counts_fp32s_answers_it_reproduces(
    exported: dict[str, Path],
) -> None:
    """The reference set carries FP32 PyTorch's detections: a device's bench (no PyTorch)
    says which share of FP32's answers (score >= 0.5) the artifact reproduces; on the host
    that is the share the artifact's own host detections (in the reference set) reproduce."""
    from edgetl.backends.detector import load_detector
    from edgetl.core.artifact.detection_reference import DetectionReference
    from edgetl.core.measures.answers import confident_agreement
    from edgetl.stages.bench.options import BenchOptions
    from edgetl.stages.detect.measure import _measure, _reference

    agreed = {}
    for key in ("cpu-fp32", "cpu-int8"):
        model = load_detector(exported[key])
        opts = BenchOptions(artifacts=[exported[key]], iterations=3, warmup=1)
        entry = _measure(model, _reference(model, opts), opts)
        reference = DetectionReference.load(exported[key] / "reference.npz")
        expected = confident_agreement(reference.fp32, reference.artifact)
        assert expected is not None and entry.agreement == round(expected, 4)
        assert len(entry.answers) == len(reference.fp32)
        agreed[key] = entry.agreement
    assert agreed["cpu-fp32"] == 1.0


def test_robustness_of_detectors_is_map_under_camera_conditions(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """bench --robustness of detectors: mAP50-95 on the reference set under the suite, the
    same pixels for FP32 and INT8, noise at severity 5 below clean; --attack is refused."""
    report = tmp_path / "report.json"
    artifacts = [exported["cpu-fp32"], exported["cpu-int8"]]
    result = cli("bench", *artifacts, "--iterations", 5, "--warmup", 1, "--robustness",
                 "--json", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mAP50-95 under" in result.output
    found = [entry["robustness"] for entry in json.loads(report.read_text())["results"]]
    for robust in found:
        assert robust["measure"] == "mAP50-95" and len(robust["corruptions"]) == 45
        noise = [c for c in robust["corruptions"] if c["family"] == "gaussian_noise"]
        assert noise[-1]["score"] < robust["clean"] and 0 <= noise[-1]["kept"] < 1
    assert [c["inputs_sha256"] for c in found[0]["corruptions"]] == [
        c["inputs_sha256"] for c in found[1]["corruptions"]
    ]
    refused = cli("bench", artifacts[0], "--robustness", "--attack", report)
    assert refused.exit_code == 2 and "classifiers" in refused.output


def test_compare_of_two_detectors_times_with_nms_and_measures_map_on_the_same_images(
    exported: dict[str, Path], tiny_run: Path
) -> None:
    base, candidate = exported["cpu-fp32"], exported["cpu-int8"]
    result = cli("compare", base, candidate, "--rounds", 4, "--iterations", 5, "--json",
                 "--max-regression", 1000, "--max-accuracy-drop", 100)  # fmt: skip
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output[result.output.index("{") :])
    assert verdict["metric"] == "mAP50-95" and verdict["n"] == SIZES["test"]
    for key, artifact in (("base_top1", base), ("candidate_top1", candidate)):
        manifest = json.loads((artifact / "manifest.json").read_text())
        assert verdict[key] == pytest.approx(manifest["test"]["map50_95"], abs=1e-5)
    strict = cli("compare", base, candidate, "--rounds", 4, "--iterations", 5,
                 "--max-regression", 1000, "--max-accuracy-drop", -100)  # fmt: skip
    assert strict.exit_code == 1 and "mAP50-95" in strict.output
    classifier = tiny_run.parent / "classifier-artifact"
    assert cli("export", tiny_run, "--target", "cpu", "--out", classifier).exit_code == 0
    mixed = cli("compare", classifier, candidate)
    assert mixed.exit_code == 2 and "not a detector artifact" in mixed.output


def test_what_detectors_do_not_do_yet_is_exit_2_naming_it(
    detect_run: Path, tmp_path: Path, tiny_weights: Path
) -> None:
    source = json.loads((detect_run / "edgetl.json").read_text())["data"]["source"]
    unfreeze = cli("finetune", "--data", source, "--out", tmp_path / "r", "--backbone",
                   TINY_BACKBONE, "--weights", tiny_weights, "--unfreeze", 9)  # fmt: skip
    assert unfreeze.exit_code == 2 and "--unfreeze 9" in unfreeze.output
    assert "features" not in unfreeze.output  # refused before any image was read
    fp16 = cli(
        "export", detect_run, "--target", "cpu", "--precision", "fp16", "--out", tmp_path / "j"
    )
    assert fp16.exit_code == 2 and "fp16" in fp16.output
    for option in (
        ("--dynamic-batch",),
        ("--rule", "paired-bound+flips"),
        ("--calib-data", source),
    ):
        refused = cli("export", detect_run, "--target", "cpu", "--out", tmp_path / "j", *option)
        assert (
            refused.exit_code == 2
            and option[0] in refused.output
            and "not for detectors" in refused.output
        )
    assert not (tmp_path / "j").exists()


def test_a_signed_archived_detector_is_trusted_by_its_key_only(
    detect_run: Path, tmp_path: Path
) -> None:
    for name in ("fleet", "other"):
        assert cli("keygen", tmp_path / name).exit_code == 0
    out = tmp_path / "signed"
    result = cli("export", detect_run, "--target", "cpu", "--out", out, "--archive", "--sign",
                 tmp_path / "fleet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "signed with SHA256:" in result.output and (tmp_path / "signed.tar.gz").is_file()
    trusted = cli("bench", out, "--iterations", 2, "--trust", tmp_path / "fleet.pub")
    assert trusted.exit_code == 0, trusted.output
    wrong = cli("bench", out, "--iterations", 2, "--trust", tmp_path / "other.pub")
    assert wrong.exit_code == 2 and "not signed by a trusted key" in " ".join(wrong.output.split())


def test_unfreeze_fine_tunes_the_pyramids_last_stages_and_auto_keeps_the_rules_depth(
    detect_run: Path, exported: dict[str, Path], tmp_path: Path, tiny_weights: Path
) -> None:
    """--unfreeze 1: the tail of the pyramid changes, its stem does not, and the export's
    PyTorch model is the fine-tuned one (its test mAP is the run's). auto: K = 0, 1, 2
    scored on val; the smallest within the tolerance of the best is kept."""
    from safetensors.numpy import load_file

    info = json.loads((detect_run / "edgetl.json").read_text())
    source = info["data"]["source"]
    common = ("--data", source, "--backbone", TINY_BACKBONE, "--weights", tiny_weights,
              "--image-size", 64, "--epochs", 4)  # fmt: skip
    one = tmp_path / "one"
    assert cli("finetune", *common, "--out", one, "--unfreeze", 1).exit_code == 0
    run = json.loads((one / "edgetl.json").read_text())
    assert run["unfreeze"]["stages"] == 1 and run["unfreeze"]["asked"] == "1"
    frozen = load_file(str(detect_run / "pyramid.safetensors"))
    tuned = load_file(str(one / "pyramid.safetensors"))
    changed = sorted(k for k in frozen if not np.array_equal(frozen[k], tuned[k]))
    assert changed and not any(k.startswith(("conv_stem", "bn1")) for k in changed)
    assert all(k.startswith("blocks.") for k in changed)
    with_history = (one / "history.csv").read_text()
    assert "unfreeze 1" in with_history and ",head" in with_history
    made = cli("export", one, "--target", "cpu", "--out", tmp_path / "art")
    assert made.exit_code == 0, made.output
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["test"]["fp32_map50_95"] == pytest.approx(
        run["metrics"]["test_map50_95"], abs=1e-4
    )
    # benched beside the frozen run's artifact (the same test images), each artifact is
    # agreed with its own run's FP32, not with the first artifact's
    report = tmp_path / "both.json"
    both = cli("bench", exported["cpu-fp32"], tmp_path / "art", "--iterations", 3, "--json",
               report)  # fmt: skip
    assert both.exit_code == 0, both.output
    frozen_entry, tuned_entry = json.loads(report.read_text())["results"]
    assert frozen_entry["agreement"] == 1.0
    # two runs' cpu-fp32: told apart by their folders (a baseline entry matches one only)
    assert [frozen_entry["name"], tuned_entry["name"]] == ["cpu-fp32", "art"]
    from edgetl.core.artifact.detection_reference import DetectionReference
    from edgetl.core.measures.answers import as_objects, confident_agreement

    answers = as_objects(tuned_entry["answers"])
    own = confident_agreement(DetectionReference.load(tmp_path / "art" / "reference.npz").fp32,
                              answers)  # fmt: skip
    other = DetectionReference.load(exported["cpu-fp32"] / "reference.npz").fp32
    assert tuned_entry.get("agreement") == (None if own is None else round(own, 4))
    assert confident_agreement(other, answers) != own  # what the first artifact's FP32 says
    auto = tmp_path / "auto"
    result = cli(
        "finetune", *common, "--out", auto, "--unfreeze", "auto", "--unfreeze-tolerance", 0.5
    )
    assert result.exit_code == 0, result.output
    record = json.loads((auto / "edgetl.json").read_text())["unfreeze"]
    trials = {t["stages"]: t["val_map50_95"] for t in record["trials"]}
    assert sorted(trials) == [0, 1, 2]
    best = max(trials.values())
    assert record["stages"] == min(k for k, v in trials.items() if (best - v) * 100 <= 0.5 + 1e-9)
    assert record["finding"]


def test_search_of_a_detection_set_chooses_on_val_within_the_budget_and_resumes(
    detect_run: Path, tmp_path: Path, tiny_weights: Path
) -> None:
    """Each precision exported under the guard and timed with NMS in shared rounds; the best
    val mAP within --max-latency chosen and copied whole; a re-run reuses what is complete;
    other settings on the same folder, and a budget nothing meets, are refused."""
    source = json.loads((detect_run / "edgetl.json").read_text())["data"]["source"]
    out = tmp_path / "search"
    common = ("--data", source, "--target", "cpu", "--out", out, "--backbones", TINY_BACKBONE,
              "--weights", tiny_weights, "--sizes", 64, "--epochs", 2, "--iterations", 20,
              "--max-accuracy-drop", 50, "--int8-payoff", 100)  # fmt: skip
    result = cli("search", *common, "--max-latency", 1000, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "search.json").read_text())
    assert report["schema"] == "edgetl.detect-search/1"
    found = {c["key"]: c for c in report["candidates"]}
    assert set(found) == {f"{TINY_BACKBONE}-64-fp32", f"{TINY_BACKBONE}-64-int8"}
    assert all(c["latency_ms"] > 0 and c["within_budget"] for c in found.values())
    # timed untrained and without NMS first: a lower bound of the artifact's batch-1 time
    assert all(c["before_training_ms"] > 0 for c in found.values())
    assert {c["runtime"] for c in found.values()} == {"onnxruntime here"}
    best = max(found.values(), key=lambda c: (c["val_map50_95"], -c["latency_ms"]))
    assert report["chosen"] == best["key"]
    chosen = json.loads((out / "chosen" / "manifest.json").read_text())
    assert chosen["test"]["map50_95"] == report["chosen_test"]["map50_95"]
    again = cli("search", *common, "--max-latency", 1000)
    assert again.exit_code == 0 and "reused" in again.output
    other = cli("search", *common, "--max-latency", 0.001)
    assert other.exit_code == 2 and "max_latency_ms" in other.output
    untrained = cli("search", *[v if v != out else tmp_path / "over" for v in common],
                    "--max-latency", 0.001)  # fmt: skip
    assert untrained.exit_code == 1, untrained.output
    pruned = json.loads((tmp_path / "over" / "search.json").read_text())["candidates"]
    assert [c["status"] for c in pruned] == ["over budget before training"] * 2
    assert all(c["before_training_ms"] > 0.001 and c["artifact"] is None for c in pruned)
    assert not (tmp_path / "over" / "runs").exists()  # nothing trained
    few = make_scenes(tmp_path / "few", sizes={"train": 12, "val": 6, "test": 6})
    small = cli("search", *[few if v == source else tmp_path / "few-search" if v == out else v
                            for v in common], "--max-latency", 1000)  # fmt: skip
    assert small.exit_code == 2 and "--precisions fp32" in " ".join(small.output.split())
    assert not (tmp_path / "few-search").exists()  # refused before anything was trained
    trt = cli("search", *[v if v != "cpu" else "jetson" for v in common], "--max-latency", 5)
    assert trt.exit_code == 2 and "--on DEVICE" in " ".join(trt.output.split())
    from edgetl.stages.detect.search import DetectCandidate, DetectSearchReport, _choose

    over = DetectSearchReport(source, "cpu", 0.001, "p50", {})
    over.candidates = [DetectCandidate("a", "b", 64, "fp32", val_map50_95=0.5, latency_ms=2.0,
                                       within_budget=False)]  # fmt: skip
    _choose(over)
    assert over.chosen is None and "no candidate meets" in over.failures[0]


def test_a_jetson_bundle_of_a_detector_keeps_tensorrts_rules_and_checks_an_engine(
    detect_run: Path, tmp_path: Path
) -> None:
    """INT8 for Jetson: the Q/DQ graph TensorRT takes (decode float), FP32 + calibration cache
    for DLA on 10, the wheel; NMS in NumPy (not timed without TensorRT); the reference set's
    host detections are what `edgetl build` holds an engine to: equal passes, boxes shifted
    fail and the engine is removed."""
    from edgetl.backends.detector import load_detector
    from edgetl.backends.tensorrt.compiler import activation_scales
    from edgetl.backends.tensorrt.detector_check import check_detector
    from edgetl.backends.tensorrt.rules import violations
    from edgetl.core.errors import CheckFailed
    from edgetl.core.records.detector import DetectorManifest

    out = tmp_path / "orin"
    result = cli("export", detect_run, "--target", "jetson-agx-orin", "--precision", "int8",
                 "--max-accuracy-drop", 50, "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "tensorrt" and manifest["nms_where"] == "device-numpy"
    assert (
        manifest["nms_choice"]["graph_p50_ms"] is None
        and "not timed" in manifest["nms_choice"]["note"]
    )
    names = {p.name for p in out.iterdir()}
    assert {
        "model.onnx",
        "model.fp32.onnx",
        "calibration.cache",
        "DEVICE.md",
        "reference.npz",
    } <= names
    assert any(name.endswith(".whl") for name in names)
    graph = onnx.load(str(out / "model.onnx"))
    assert violations(graph) == []
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    quantized = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    decode = [n for n in graph.graph.node if "/decode/" in n.name]
    assert decode and not any(i in quantized for n in decode for i in n.input)
    assert activation_scales(graph)  # the cache DLA on TensorRT 10 builds from
    read = DetectorManifest.read(out)
    host = load_detector(out)  # no TensorRT here: the host proxy runs the bundle's ONNX
    assert host.proxy == "onnxruntime"
    checked = check_detector(out, read, host.runner)
    assert checked["passed"] and checked["agreement"] == 1.0
    assert checked["n"] == SIZES["test"] and checked["map50_95"] == checked["host_map50_95"]

    class Shifted:  # an engine whose boxes are 24 px off
        batch_size = None

        def named(self, images: np.ndarray) -> dict[str, np.ndarray]:
            found = host.runner.named(images)
            return {**found, "boxes": found["boxes"] + 24.0}

    (out / "model.engine").write_bytes(b"engine")
    with pytest.raises(CheckFailed, match="agreement"):
        check_detector(out, read, Shifted())
    assert not (out / "model.engine").exists()


def test_a_jetson_fp16_detector_checks_its_fp16_graph_and_benches_on_its_reference_set(
    detect_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "orin-fp16"
    result = cli("export", detect_run, "--target", "jetson-agx-orin", "--precision", "fp16",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    check = manifest["parity"]["host_checks"]["model.fp16.onnx"]  # TensorRT 11's graph
    assert check["drop_upper_pts"] <= 1.0
    source = Path(json.loads((detect_run / "edgetl.json").read_text())["data"]["source"])
    away = source.with_name("away")
    source.rename(away)  # a device: the run's data is not there
    try:
        bench = cli("bench", out, "--iterations", 3, "--json", tmp_path / "b.json")
    finally:
        away.rename(source)
    assert bench.exit_code == 0, bench.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["split"] == "reference" and report["results"][0]["images"] == SIZES["test"]
    assert report["results"][0]["map50_95"] == manifest["test"]["map50_95"]


def test_nms_in_the_graph_keeps_numpy_nms_detections(exported: dict[str, Path]) -> None:
    """The same graph ending in ONNX NonMaxSuppression + TopK, on ONNX Runtime: the same
    detections as NumPy NMS after it (those above the padding's tied scores)."""
    import onnxruntime as ort

    from edgetl.core.postprocess import NmsSettings, detections
    from edgetl.stages.detect.nms_graph import with_nms

    graph = onnx.load(str(exported["cpu-fp32"] / "model.onnx"))
    if graph.graph.output[0].name == "det_boxes":
        graph = _without_nms(graph)
        del graph.graph.output[:]
        graph.graph.output.extend(
            [onnx.helper.make_empty_tensor_value_info(n) for n in ("boxes", "scores")]
        )
    plain = ort.InferenceSession(graph.SerializeToString())
    nms = ort.InferenceSession(with_nms(graph, NmsSettings()).SerializeToString())
    rng = np.random.default_rng(0)
    size = plain.get_inputs()[0].shape[-1]
    compared = 0
    for _ in range(4):
        x = {"images": rng.uniform(-2, 2, (1, 3, size, size)).astype(np.float32)}
        boxes, scores = plain.run(None, x)
        ours = detections(boxes[0], scores[0], NmsSettings())
        det_boxes, det_scores, det_classes = nms.run(None, x)
        assert ours.scores is not None
        kept, theirs = ours.scores >= FLOOR, det_scores >= FLOOR
        assert kept.sum() == theirs.sum()
        order = np.argsort(-det_scores[theirs], kind="stable")
        np.testing.assert_allclose(det_boxes[theirs][order], ours.boxes[kept], atol=1e-4)
        assert det_classes[theirs][order].tolist() == ours.classes[kept].tolist()
        compared += int(kept.sum())
    assert compared > 0


def _without_nms(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The graph's nodes before its NMS (nms_graph.py names them /nms/... and det_*)."""
    kept = [n for n in graph.graph.node if not n.name.startswith(("/nms/", "det_"))]
    del graph.graph.node[:]
    graph.graph.node.extend(kept)
    constants = [t for t in graph.graph.initializer if not t.name.startswith("/nms/")]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(constants)
    return graph


def test_a_detector_runs_on_the_device_side_without_torch(
    exported: dict[str, Path], detect_run: Path, tmp_path: Path
) -> None:
    """predict and bench of a detector with torch, timm, nncf, sklearn and onnx blocked."""
    from tests.test_device_side import run_blocked

    source = json.loads((detect_run / "edgetl.json").read_text())["data"]["source"]
    image = sorted((Path(source) / "images" / "test").glob("*.png"))[0]
    report = tmp_path / "report.json"
    code = f"""
import edgetl
from edgetl.cli import main
model = edgetl.load({str(exported["openvino-cpu-fp32"])!r})
print("FOUND", type(model.predict({str(image)!r})).__name__)
try:
    main(["bench", {str(exported["cpu-int8"])!r}, "--data", {source!r}, "--iterations", "3",
          "--json", {str(report)!r}])
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""
    result = run_blocked(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "FOUND list" in result.stdout and "LOADED []" in result.stdout
    assert json.loads(report.read_text())["results"][0]["images"] == SIZES["test"]


def _planted(run: Path, out: Path) -> Path:
    """A copy of `run` whose level-0 neck output has one channel at ~1e4 that nothing reads
    (the towers' weights for it zeroed): FP32 never sees it, but INT8's one scale for that
    tensor wipes every real channel of the finest level, where the small objects are."""
    import hashlib
    import shutil

    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(run, out, ignore=shutil.ignore_patterns("export")))
    weights = copy / "detector.safetensors"
    state = load_file(str(weights))
    state["neck.smooth.0.1.bias"][0] = 1e4  # BatchNorm's shift, before the ReLU
    for tower in ("cls_tower", "box_tower"):
        state[f"head.{tower}.0.0.weight"][:, 0] = 0.0
    save_file(state, str(weights))
    info = json.loads((copy / "edgetl.json").read_text())
    info["weights"]["detector.safetensors"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (copy / "edgetl.json").write_text(json.dumps(info))
    return copy


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """A run trained long enough to find objects (the planted layer must cost mAP)."""
    base = tmp_path_factory.mktemp("trained")
    data = make_scenes(base / "scenes", sizes={"train": 48, "val": 32, "test": 24})
    out = base / "run"
    result = cli("finetune", "--data", data, "--out", out, "--backbone", TINY_BACKBONE,
                 "--weights", tiny_weights, "--image-size", 64, "--epochs", 25)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_on_a_target_that_runs_fp16_the_guards_float_layers_go_to_fp16_when_it_holds(
    trained_run: Path, tmp_path: Path
) -> None:
    """Mixed precision for detectors: on openvino-cpu-fp16 the planted layer's accepted float
    rescue is tried in FP16 and kept (the rule accepts it: within the budget on val); the
    artifact's graph computes those layers in FP16 and says so."""
    run = _planted(trained_run, tmp_path / "planted")
    out = tmp_path / "int8"
    result = cli("export", run, "--target", "openvino-cpu-fp16", "--precision", "int8",
                 "--out", out, "--max-accuracy-drop", 5)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    quantization = manifest["quantization"]
    chosen = quantization["attempts"][-1]
    assert chosen["name"].endswith(" in FP16") and chosen["float16"], chosen
    assert chosen["verdict"].startswith("accepted") and chosen["drop_upper_pts"] <= 5
    assert quantization["float16"] and quantization["float_layers"] == chosen["float_layers"]
    fp32_rescue = quantization["attempts"][-2]
    assert fp32_rescue["float_layers"] == chosen["float_layers"] and not fp32_rescue["float16"]
    report = json.loads((out / "sensitivity.json").read_text())
    halves = {r["layer"] for r in report["layers"] if r["precision"] == "float16"}
    assert halves == set(chosen["float_layers"])


def test_the_guard_keeps_a_planted_layer_that_wrecks_map_in_float(
    trained_run: Path, tmp_path: Path
) -> None:
    run = _planted(trained_run, tmp_path / "planted")
    out = tmp_path / "int8"
    result = cli("export", run, "--target", "cpu", "--precision", "int8", "--out", out,
                 "--max-accuracy-drop", 5)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    attempts = manifest["quantization"]["attempts"]
    assert attempts[0]["verdict"].startswith("refused") and attempts[0]["drop_pts"] > 5
    chosen = attempts[-1]
    assert chosen["verdict"].startswith("accepted")
    assert any("/head/cls_tower/" in n or "/head/box_tower/" in n
               for n in chosen["float_layers"]), chosen  # fmt: skip
    test = manifest["test"]
    assert (test["fp32_map50_95"] - test["map50_95"]) * 100 < 5 + 5  # budget + test's noise
    report = json.loads((out / "sensitivity.json").read_text())  # the ranker's mAP per layer
    assert report["metric"] == "map50_95" and report["images"] > 0
    assert report["kept"] == chosen["name"] and len(report["path"]) == len(attempts)
    floats = {r["layer"] for r in report["layers"] if r["precision"] == "float32"}
    assert floats == set(chosen["float_layers"])
