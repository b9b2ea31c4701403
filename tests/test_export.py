from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.core.errors import EdgetlError
from edgetl.core.files import sha256_file
from tests.conftest import load_manifest


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "cpu-fp32"
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--target", "cpu", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_artifact_files_and_checksums(exported: Path, tiny_run: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["schema"] == "edgetl.manifest/4"
    assert (manifest["target"], manifest["backend"], manifest["precision"]) == (
        "cpu",
        "onnxruntime",
        "fp32",
    )
    assert manifest["model_files"] == ["model.onnx"]
    for name, entry in manifest["files"].items():
        assert sha256_file(exported / name) == entry["sha256"]
    assert manifest["classes"] == ["class_0", "class_1", "class_2"]
    assert manifest["preprocess"]["size"] == 64
    assert {"torch", "onnx", "onnxruntime", "runtime"} <= set(manifest["versions"])
    assert manifest["run"]["path"] == str(tiny_run.resolve())
    assert manifest["run"]["sha256"] == sha256_file(tiny_run / "edgetl.json")
    assert set(manifest["files"]) == {"model.onnx", "reference.npz"}
    assert not list(exported.parent.glob(".*partial*"))


def test_manifest_reports_test_accuracy_beside_val(exported: Path, tiny_run: Path) -> None:
    """The test split is measured (never chosen on) and its size is the run's test split."""
    run = json.loads((tiny_run / "edgetl.json").read_text())
    accuracy = load_manifest(exported)["accuracy"]
    assert accuracy["measured_on"] == "onnxruntime"
    assert accuracy["test"]["n"] == run["data"]["sizes"]["test"]
    assert accuracy["test"]["top1"] == pytest.approx(accuracy["test"]["fp32_top1"])
    assert accuracy["test"]["fp32_top1"] == pytest.approx(run["metrics"]["test_top1"], abs=1e-4)
    assert accuracy["val"]["n"] == run["data"]["sizes"]["val"]


def test_reference_set_is_test_images_with_fp32_logits(exported: Path, tiny_run: Path) -> None:
    from edgetl.core.artifact.reference import ReferenceSet
    from edgetl.train.model import load_run, torch_logits

    manifest = load_manifest(exported)
    ref = ReferenceSet.load(exported / "reference.npz")
    run = load_run(tiny_run)
    test_keys = set(run.splits().test.keys)
    assert manifest["reference"]["n"] == len(ref) == len(test_keys)  # fewer than 200: all
    assert set(ref.keys) == test_keys
    assert ref.images.dtype == np.uint8 and ref.images.shape[1:] == (3, 64, 64)
    logits = torch_logits(run.classifier(), run.preprocess.normalize(ref.images))
    assert np.abs(logits - ref.fp32_logits).max() < 1e-5


def test_parity_within_tolerance(exported: Path) -> None:
    parity = json.loads((exported / "manifest.json").read_text())["parity"]
    assert parity["passed"] and parity["n"] > 0
    assert parity["max_abs_diff"] <= 1e-3
    assert parity["agreement"] == 1.0


def test_onnx_graph_carries_metadata(exported: Path) -> None:
    graph = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(graph)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["edgetl.classes"]) == ["class_0", "class_1", "class_2"]
    assert json.loads(meta["edgetl.preprocess"])["size"] == 64
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]


def test_dynamic_batch(tiny_run: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "dyn"
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--target", "cpu", "--dynamic-batch", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": np.zeros((5, 3, 64, 64), np.float32)})[0]
    assert logits.shape == (5, 3)


def test_refuses_to_overwrite_then_force(exported: Path, tiny_run: Path) -> None:
    args = ["export", str(tiny_run), "--target", "cpu", "--out", str(exported)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "--force" in refused.output
    forced = CliRunner().invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    load_manifest(exported)


def test_failed_parity_exits_1_and_writes_nothing(tiny_run: Path, tmp_path: Path) -> None:
    strict = tmp_path / "strict.toml"
    text = (Path(__file__).parents[1] / "targets" / "cpu.toml").read_text()
    strict.write_text(
        text.replace('name = "cpu"', 'name = "strict"').replace(
            "max_abs_diff = 1e-3", "max_abs_diff = -1.0"
        )
    )
    out = tmp_path / "never"
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--target", str(strict), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "parity check failed" in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".never*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nosuch"], "--target nosuch: unknown"),
        (["--target", "cpu", "--precision", "fp16"], "supports fp32, int8"),
        (["--target", "cpu", "--recipe", "nncf-mixed"], "only used with --precision int8"),
        (
            ["--target", "cpu", "--precision", "int8", "--recipe", "nosuch"],
            "--recipe nosuch: unknown",
        ),
        (
            ["--target", "cpu", "--precision", "int8", "--max-accuracy-drop", "-1"],
            "between 0 and 100",
        ),
        (["--target", "cpu", "--precision", "int8", "--calib-samples", "8"], "need at least 32"),
        (["--target", "cpu", "--precision", "int8", "--calib-samples", "0"], "need at least 32"),
    ],
)
def test_bad_export_options_exit_2(tiny_run: Path, tmp_path: Path, args, message) -> None:
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--out", str(tmp_path / "x"), *args]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x").exists()


def test_export_of_a_non_run_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--target", "cpu"])
    assert result.exit_code == 2
    assert "edgetl.json" in result.output


def test_bench_json_shape(exported: Path, tiny_run: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            str(exported),
            "--iterations",
            "20",
            "--warmup",
            "2",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["schema"] == "edgetl.bench/1"
    (entry,) = report["results"]
    assert {"top1", "top5", "n", "agreement", "per_class", "confusion"} <= set(entry["accuracy"])
    assert entry["accuracy"]["agreement"] == 1.0  # against the reference set's FP32 logits
    assert entry["accuracy"]["n"] == load_manifest(exported)["reference"]["n"]
    assert len(entry["samples_ms"]) == 20
    assert entry["accuracy"]["top5"] == 1.0  # three classes
    assert set(entry["latency_ms"]) == {"p50", "p90", "p99", "mean", "std", "min", "max"}
    lat = entry["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    for key in (
        "iterations",
        "warmup",
        "throughput_ips",
        "load_s",
        "first_inference_ms",
        "peak_rss_mb",
        "size_mb",
        "env",
    ):
        assert key in entry
    assert entry["iterations"] == 20
    assert entry["size_mb"] == pytest.approx(
        (exported / "model.onnx").stat().st_size / 1e6, abs=1e-3
    )
    assert {"cpu", "threads", "os", "runtimes"} <= set(entry["env"])


def test_bench_refuses_a_tampered_artifact(exported: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(EdgetlError, match="sha256 differs"):
        load_manifest(copy)
    # No --data: nothing else could fail, the checksum must be what stops it.
    result = CliRunner().invoke(main, ["bench", str(copy)])
    assert result.exit_code == 2
    assert "model.onnx: sha256 differs" in " ".join(result.output.split())


def test_bench_with_another_builtin_dataset_exits_2(exported: Path) -> None:
    result = CliRunner().invoke(main, ["bench", str(exported), "--data", "digits"])
    assert result.exit_code == 2
    assert "not on the built-in digits" in " ".join(result.output.split())


def test_targets_lists_cpu() -> None:
    result = CliRunner().invoke(main, ["targets", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    cpu = next(r for r in rows if r["name"] == "cpu")
    assert cpu["backend"] == "onnxruntime" and cpu["runtime_present"] is True


def test_a_typo_in_a_target_profile_is_named(tiny_run: Path, tmp_path: Path) -> None:
    from importlib import resources

    text = resources.files("edgetl.profiles").joinpath("openvino-cpu.toml").read_text()
    profile = tmp_path / "mine.toml"
    profile.write_text(text.replace("hint = ", "hnit = "))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--target", str(profile), "--out", str(out)]
    )
    assert result.exit_code == 2 and "unknown keys ['hnit']" in result.output
    assert not out.exists()


def test_int8_export_prints_no_cuda_noise_on_a_cpu_host(tiny_run: Path, tmp_path: Path) -> None:
    """torch's `No CUDA runtime is found` warning came with every INT8 export on CPU hosts."""
    import subprocess
    import sys

    edgetl = str(Path(sys.executable).parent / "edgetl")
    result = subprocess.run(
        [edgetl, "export", str(tiny_run), "--target", "cpu", "--precision", "int8"]
        + ["--out", str(tmp_path / "int8"), "--max-accuracy-drop", "100"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "No CUDA runtime" not in result.stderr + result.stdout
