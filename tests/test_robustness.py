"""bench --robustness: camera conditions (a seeded albumentations suite) and the teacher-
transfer attack (`edgetl attack`, crafted from the public backbone alone), on tiny runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from tests.conftest import TINY_BUDGET, export_cli, finetune_tiny


def clean_folder(root: Path, classes: int = 3, per_class: int = 40) -> Path:
    """Flat colour per class with light grain: clean pictures that heavy noise hides."""
    rng = np.random.default_rng(3)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            size = int(rng.integers(48, 80))
            pixels = rng.integers(60, 100, (size, size, 3)).astype(np.uint8)
            pixels[..., label] += 100
            Image.fromarray(pixels).save(folder / f"img_{index}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """A tiny run that learned its classes (with a scratch model kept beside), exported
    FP32 and INT8 for the CPU."""
    base = tmp_path_factory.mktemp("robust")
    data = clean_folder(base / "photos")
    run = finetune_tiny(data, base / "run", tiny_weights, epochs=40, scratch_baseline=True)
    for precision in ("fp32", "int8"):
        result = export_cli(run, base / precision, "--target", "cpu", "--precision", precision,
                            *TINY_BUDGET)  # fmt: skip
        assert result.exit_code == 0, result.output
    return base


def _artifact(base: Path, precision: str) -> Path:
    return next(path.parent for path in (base / precision).rglob("manifest.json"))


def _reference_pixels(artifact: Path) -> np.ndarray:
    from edgetl.core.artifact.reference import ReferenceSet

    return ReferenceSet.load(artifact / "reference.npz").images


def _bench(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["bench", *args, "--iterations", "10", "--rounds", "1",
                                       "--warmup", "1", "--no-cold"])  # fmt: skip
    return result.exit_code, result.output


def test_the_corruption_suite_is_deterministic() -> None:
    from edgetl.stages.bench.corruptions import corrupt, load_suite

    suite = load_suite()
    assert len(list(suite.conditions())) == 45  # nine families, five severities
    images = np.random.default_rng(1).integers(0, 256, (6, 3, 48, 48), dtype=np.uint8)
    for family, severity in suite.conditions():
        first = corrupt(suite, family, severity, images)
        assert first.dtype == np.uint8 and first.shape == images.shape
        assert first.tobytes() == corrupt(suite, family, severity, images).tobytes(), family
        assert not np.array_equal(first, images), (family, severity)
    mild = corrupt(suite, "gaussian_noise", 1, images).astype(int)
    harsh = corrupt(suite, "gaussian_noise", 5, images).astype(int)
    assert np.abs(harsh - images).mean() > 2 * np.abs(mild - images).mean()


def test_a_bad_suite_is_exit_2_naming_the_file(tiny_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "night.toml"
    bad.write_text('name = "night"\ndescription = ""\nseed = 0\nreference_size = 224\n'
                   '[families.dark]\ntransform = "NoSuchThing"\nparameter = "x"\n'
                   "values = [1]\n")  # fmt: skip
    export = tiny_run / "export"
    artifact = next(export.rglob("manifest.json")).parent if export.exists() else None
    if artifact is None:
        assert export_cli(tiny_run, tmp_path / "a", "--target", "cpu").exit_code == 0
        artifact = next((tmp_path / "a").rglob("manifest.json")).parent
    code, output = _bench(str(artifact), "--robustness", "--corruptions", str(bad))
    assert code == 2 and "night.toml" in output and "NoSuchThing" in output, output
    code, output = _bench(str(artifact), "--robustness", "--limit", "5")
    assert code == 2 and "--limit" in output, output


def test_robustness_in_the_bench(trained: Path, tmp_path: Path) -> None:
    fp32, int8 = _artifact(trained, "fp32"), _artifact(trained, "int8")
    crafted = tmp_path / "attack.npz"
    result = CliRunner().invoke(main, ["attack", str(fp32), "--out", str(crafted)])
    assert result.exit_code == 0, result.output
    report = tmp_path / "r.json"
    code, output = _bench(str(fp32), str(int8), "--robustness", "--attack", str(crafted),
                          "--json", str(report))  # fmt: skip
    assert code == 0, output
    assert "robustness" in output and "public backbone" in output
    results = json.loads(report.read_text())["results"]
    for entry in results:
        robust = entry["robustness"]
        # the same images as the plain bench: its clean top-1 is the bench's
        assert robust["clean"] == pytest.approx(entry["accuracy"]["top1"])
        assert robust["n"] == entry["accuracy"]["n"]
        assert len(robust["corruptions"]) == 45 and len(robust["families"]) == 9
        noise5 = next(c for c in robust["corruptions"]
                      if c["family"] == "gaussian_noise" and c["level"] == 5)  # fmt: skip
        assert noise5["score"] < robust["clean"] - 0.1, noise5
        attack = {c["level"]: c["score"] for c in robust["attack"]}
        assert attack[8.0] < robust["clean"] - 0.1, attack
        assert robust["attack_info"]["scratch"]["clean"] > 0
    # FP32 and INT8 were fed the very same pixels under every condition
    sha = [[c["inputs_sha256"] for c in e["robustness"]["corruptions"]] for e in results]
    assert sha[0] == sha[1]
    # a baseline of itself passes; one that was far more robust fails, naming the measure
    assert _bench(str(fp32), "--robustness", "--attack", str(crafted), "--baseline",
                  str(report))[0] == 0  # fmt: skip
    data = json.loads(report.read_text())
    for entry in data["results"]:
        entry["robustness"]["mean_corrupted"] = 1.0
    better = tmp_path / "better.json"
    better.write_text(json.dumps(data))
    code, output = _bench(str(fp32), "--robustness", "--attack", str(crafted), "--baseline",
                          str(better), "--max-regression", "1000")  # fmt: skip
    assert code == 1 and "mean corrupted" in output, output
    # the pytest plugin's gate says the same
    from edgetl.core.records import BenchReport
    from edgetl.pytest_plugin import assert_no_regression

    mine = BenchReport.read(report).results[0]
    assert_no_regression(mine, report, max_regression=1000)
    with pytest.raises(AssertionError, match="mean corrupted"):
        assert_no_regression(mine, better, max_regression=1000)


def test_the_attack_never_reads_the_users_head(trained: Path, tmp_path: Path) -> None:
    """The file depends on the public weights, the run's train images and the reference
    set: another head (same shapes) leaves it byte-identical."""
    from safetensors.torch import load_file, save_file

    fp32 = _artifact(trained, "fp32")
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    args = ["--epsilons", "4", "--method", "fgsm", "--surrogate-images", "30"]
    assert CliRunner().invoke(main, ["attack", str(fp32), "--out", str(first), *args]
                              ).exit_code == 0  # fmt: skip
    run = trained / "run"
    saved = tmp_path / "head.safetensors"
    shutil.copy(run / "head.safetensors", saved)
    try:
        head = load_file(str(run / "head.safetensors"))
        save_file({k: v * -3.0 + 1.0 for k, v in head.items()}, str(run / "head.safetensors"))
        result = CliRunner().invoke(main, ["attack", str(fp32), "--out", str(second), *args])
        assert result.exit_code == 0, result.output
    finally:
        shutil.copy(saved, run / "head.safetensors")
    assert first.read_bytes() == second.read_bytes()
    from edgetl.core.artifact.attack_set import AttackSet

    crafted = AttackSet.load(first)
    assert crafted.info.method.startswith("FGSM") and crafted.epsilons == [4.0]
    moved = np.abs(crafted.images[0].astype(int) - _reference_pixels(fp32).astype(int))
    assert moved.max() <= 4 and moved.mean() > 1  # within the ball, and it moved
    result = CliRunner().invoke(main, ["attack", str(fp32), "--out", str(first), *args])
    assert result.exit_code == 2 and "--force" in result.output  # never overwritten


def test_an_attack_file_of_other_images_or_damaged_is_exit_2(tmp_path: Path) -> None:
    from edgetl.core.artifact.attack_set import AttackSet, pixels_digest
    from edgetl.core.errors import EdgetlError
    from edgetl.core.records.robustness import AttackInfo

    clean = np.zeros((4, 3, 8, 8), np.uint8)
    crafted = AttackSet(np.ones((1, 4, 3, 8, 8), np.uint8), np.arange(4), [4.0],
                        pixels_digest(clean), AttackInfo("", "", "pgd", "b", "w", "s"))  # fmt: skip
    path = tmp_path / "a.npz"
    crafted.save(path)
    read = AttackSet.load(path)
    assert read.info.sha256 and read.epsilons == [4.0]
    read.check_digest(pixels_digest(clean), tmp_path)  # the images it was crafted from
    with pytest.raises(EdgetlError, match="edgetl attack"):
        read.check_digest(pixels_digest(clean + 1), tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EdgetlError, match="a.npz"):
        AttackSet.load(path)
