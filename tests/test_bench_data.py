"""What `edgetl bench --data` measures: every image of another folder, or the run's own data
by role after checking it is unchanged; exit codes for bad input across the commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from tests.conftest import export_cli, write_folder


@pytest.fixture(scope="module")
def artifact(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-data") / "cpu-fp32"
    result = export_cli(tiny_run, out, "--target", "cpu")
    assert result.exit_code == 0, result.output
    return out


def bench_json(tmp_path: Path, *args: str) -> tuple[int, str, dict | None]:
    path = tmp_path / "report.json"
    path.unlink(missing_ok=True)
    result = CliRunner().invoke(
        main, ["bench", *args, "--iterations", "2", "--warmup", "0", "--json", str(path)]
    )
    report = json.loads(path.read_text()) if path.exists() else None
    return result.exit_code, " ".join(result.output.split()), report


def test_another_folder_is_measured_whole(artifact: Path, tmp_path: Path) -> None:
    """A separate folder is never re-split: n is its image count; a class may be absent,
    and a class with a single image is fine."""
    folder = write_folder(tmp_path / "field", classes=2, per_class=7, seed=9)
    for extra in list((folder / "class_1").iterdir())[1:]:
        extra.unlink()  # class_1: one image
    code, output, report = bench_json(tmp_path, str(artifact), "--data", str(folder))
    assert code == 0, output
    acc = report["results"][0]["accuracy"]
    assert acc["n"] == 8
    assert acc["absent_classes"] == ["class_2"]
    assert {k: v["n"] for k, v in acc["per_class"].items()} == {"class_0": 7, "class_1": 1}
    assert sum(map(sum, acc["confusion"])) == 8
    assert sum(acc["confusion"][1]) == 1 and sum(acc["confusion"][2]) == 0
    assert "classes absent from the data: class_2" in output


def test_a_folder_of_a_single_class_is_measured(artifact: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "one", classes=1, per_class=4, seed=3)
    code, output, report = bench_json(tmp_path, str(artifact), "--data", str(folder))
    assert code == 0, output
    assert report["results"][0]["accuracy"]["n"] == 4
    assert report["results"][0]["accuracy"]["absent_classes"] == ["class_1", "class_2"]


def test_a_folder_naming_an_unknown_class_exits_2(artifact: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "field", classes=2, per_class=2)
    (folder / "class_1").rename(folder / "zebra")
    code, output, report = bench_json(tmp_path, str(artifact), "--data", str(folder))
    assert code == 2 and "folders ['zebra'] name no class of this model" in output
    assert report is None


def test_the_runs_own_data_by_split(artifact: Path, tiny_run: Path, tmp_path: Path) -> None:
    run = json.loads((tiny_run / "edgetl.json").read_text())
    source = run["data"]["source"]
    for split in ("test", "val", "train"):
        args = [str(artifact), "--data", source, "--split", split]
        code, output, report = bench_json(tmp_path, *args)
        assert code == 0, output
        assert report["results"][0]["accuracy"]["n"] == run["data"]["sizes"][split]
    # A copy elsewhere with the same contents is recognised by its fingerprint.
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    code, output, report = bench_json(tmp_path, str(artifact), "--data", str(copy))
    assert code == 0 and report["results"][0]["accuracy"]["n"] == run["data"]["sizes"]["test"]


def test_the_runs_data_changed_exits_2(tiny_run: Path, tiny_weights: Path, tmp_path: Path) -> None:
    data = tmp_path / "photos"
    shutil.copytree(
        Path(json.loads((tiny_run / "edgetl.json").read_text())["data"]["source"]), data
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["finetune", "--data", str(data), "--out", str(run), "--backbone", "test_efficientnet",
         "--weights", str(tiny_weights),
         "--image-size", "64", "--epochs", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    art = tmp_path / "art"
    assert export_cli(run, art, "--target", "cpu").exit_code == 0
    Image.new("RGB", (50, 50), (9, 9, 9)).save(data / "class_0" / "new.png")
    code, output, _ = bench_json(tmp_path, str(art), "--data", str(data))
    assert code == 2 and "changed since the run was trained" in output
    result = export_cli(run, tmp_path / "again", "--target", "cpu")
    assert result.exit_code == 2 and "changed since the run" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit 0"),
        (["--iterations", "0"], "--iterations 0"),
        (["--split", "val"], "--split: only with --data"),
    ],
)
def test_bad_bench_options_exit_2(artifact: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["bench", str(artifact), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_export_bad_counts_exit_2(tiny_run: Path, tmp_path: Path) -> None:
    for option in ("--parity-samples", "--reference-samples"):
        result = export_cli(tiny_run, tmp_path / "x", "--target", "cpu", option, "0")
        assert result.exit_code == 2 and f"{option} 0" in result.output
        assert not (tmp_path / "x").exists()


def test_an_unexpected_error_is_exit_3_and_says_bug(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgetl.stages.bench.harness as harness

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated")

    monkeypatch.setattr(harness, "bench", broken)
    result = CliRunner().invoke(main, ["bench", str(artifact)])
    assert result.exit_code == 3
    assert "This is a bug in edgetl" in " ".join(result.output.split())


def test_budget_equal_to_the_drop_passes() -> None:
    from edgetl.core.measures.metrics import within_budget

    drop = 100 * (0.9 - 0.89)  # 1.0000000000000009 in floating point
    assert drop > 1.0 and within_budget(drop, 1.0)
    assert not within_budget(100 * (0.9 - 0.888), 1.0)


def test_a_host_proxy_measures_accuracy(tiny_run: Path, tmp_path: Path) -> None:
    """A profile may name another backend to measure accuracy on the host (TensorRT will)."""
    from importlib import resources

    text = resources.files("edgetl.profiles").joinpath("openvino-cpu.toml").read_text()
    profile = tmp_path / "proxied.toml"
    profile.write_text(
        text.replace('recipe = "nncf-mixed"', 'recipe = "nncf-mixed"\nhost_proxy = "onnxruntime"')
    )
    out = tmp_path / "art"
    result = export_cli(tiny_run, out, "--target", str(profile))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["backend"] == "openvino" and manifest["accuracy"]["measured_on"] == "onnxruntime"
    )
    assert manifest["model_files"] == ["model.xml", "model.bin"]


def test_training_images_in_a_held_out_folder_are_excluded(
    artifact: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """A copy of the training folder plus one image was measured whole (304 of 385 seen
    images, 98.96%, no warning): the run's train/val images are excluded, and counted."""
    run = json.loads((tiny_run / "edgetl.json").read_text())
    sizes = run["data"]["sizes"]
    folder = tmp_path / "copy"
    shutil.copytree(tiny_run.parent / "photos", folder)
    for image in folder.rglob("img_0.*"):  # renamed: content, not names, tells
        image.rename(image.with_name("renamed" + image.suffix))
    new = write_folder(tmp_path / "new", classes=1, per_class=1, seed=42)
    shutil.copy(next((new / "class_0").iterdir()), folder / "class_0" / "brand_new.jpg")
    code, output, report = bench_json(tmp_path, str(artifact), "--data", str(folder))
    assert code == 0, output
    seen = sizes["train"] + sizes["val"]
    assert report["results"][0]["accuracy"]["n"] == sizes["test"] + 1
    assert f"excluded {seen} of {seen + sizes['test'] + 1} images" in output
    code, output, report = bench_json(
        tmp_path, str(artifact), "--data", str(folder), "--allow-overlap"
    )
    assert code == 0, output
    assert report["results"][0]["accuracy"]["n"] == seen + sizes["test"] + 1
    assert "not held-out" in output
    only_seen = tmp_path / "seen"
    shutil.copytree(tiny_run.parent / "photos", only_seen)
    keys = set(run["data"]["key_sha256"])  # roles
    assert keys == {"train", "val", "test"}
    from edgetl.core.data.dataset import load_dataset

    splits = load_dataset(str(only_seen), run["data"]["val_fraction"], run["data"]["test_fraction"])
    for key in splits.test.keys:
        (only_seen / key).unlink()
    code, output, _ = bench_json(tmp_path, str(artifact), "--data", str(only_seen))
    assert code == 2 and "all" in output and "train/val images" in output
