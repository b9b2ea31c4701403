from __future__ import annotations

import csv
import json
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from edgetl.cli import main
from edgetl.core.events import reporting
from edgetl.stages.finetune import FinetuneOptions, finetune
from edgetl.train.backbones import read_state_dict
from edgetl.train.model import load_run
from tests.conftest import TINY_BACKBONE, write_folder


def tiny_options(data: Path, out: Path, weights: Path, **extra) -> FinetuneOptions:
    settings = {"image_size": 64, "epochs": 15, **extra}
    return FinetuneOptions(
        data=str(data), out=out, backbone=TINY_BACKBONE, weights=weights, **settings
    )


def test_run_directory_contents(tiny_run: Path) -> None:
    files = sorted(p.name for p in tiny_run.iterdir())
    assert files == ["backbone.safetensors", "edgetl.json", "head.safetensors", "history.csv"]
    meta = json.loads((tiny_run / "edgetl.json").read_text())
    assert meta["classes"] == ["class_0", "class_1", "class_2"]
    assert meta["backbone"]["timm_name"] == TINY_BACKBONE
    assert meta["backbone"]["weights_source"].startswith("file:")
    assert len(meta["backbone"]["weights_sha256"]) == 64
    assert meta["preprocess"]["size"] == 64
    assert meta["versions"]["torch"] == metadata.version("torch")
    with open(tiny_run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {"epoch", "train_loss", "val_loss", "val_top1"} <= set(rows[0])


def test_head_learns_the_classes(tiny_run: Path) -> None:
    meta = json.loads((tiny_run / "edgetl.json").read_text())
    assert meta["metrics"]["val_top1"] >= 0.85
    assert meta["metrics"]["train_top1"] >= 0.9
    assert meta["metrics"]["test_top1"] >= 0.6  # a random tiny backbone; reported, not chosen


def test_run_records_all_three_splits(tiny_run: Path) -> None:
    from edgetl.train.model import load_run

    run = load_run(tiny_run)
    splits = run.splits()
    data = run.info.data
    assert data.sizes == {"train": 36, "val": 12, "test": 12}
    for role in ("train", "val", "test"):
        assert data.key_sha256[role] == splits.part(role).key_hash()
    assert data.test_fraction == 0.2 and "stratified" in data.strategy


def test_frozen_backbone_is_unchanged(tiny_run: Path, tiny_weights: Path) -> None:
    saved = load_file(str(tiny_run / "backbone.safetensors"))
    original = read_state_dict(tiny_weights)
    for name, tensor in saved.items():
        assert torch.equal(tensor, original[name]), name


def cache_rows(cache: Path) -> int:
    """Rows stored in every shard of the per-image feature cache."""
    from safetensors import safe_open

    total = 0
    for shard in cache.glob("v1/*/shards/*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            total += int(handle.metadata()["rows"])
    return total


def test_feature_cache_is_used_by_the_second_run(tmp_path: Path, tiny_weights: Path) -> None:
    data = write_folder(tmp_path / "photos", per_class=6)
    cache = tmp_path / "cache"
    first = finetune(tiny_options(data, tmp_path / "a", tiny_weights, cache_dir=cache))
    second = finetune(tiny_options(data, tmp_path / "b", tiny_weights, cache_dir=cache))
    assert first.metrics.feature_cache.startswith("miss")
    assert second.metrics.feature_cache == "hit"
    assert cache_rows(cache) == 18  # one row per image, stored once
    # the same training on the same features gives the same head
    head_a = load_file(str(tmp_path / "a" / "head.safetensors"))
    head_b = load_file(str(tmp_path / "b" / "head.safetensors"))
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)
    # changed data -> new rows, no stale features
    write_folder(tmp_path / "photos", per_class=7, seed=5)
    third = finetune(tiny_options(data, tmp_path / "c", tiny_weights, cache_dir=cache))
    assert third.metrics.feature_cache.startswith("miss")


def test_rows_are_float16_where_the_head_does_not_notice(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """The first run measures the head on float32 and float16 rows, records the choice, and
    narrows the shards it wrote; a cached re-run trains on exactly the same features."""
    data = write_folder(tmp_path / "photos", per_class=6)
    cache = tmp_path / "cache"
    finetune(tiny_options(data, tmp_path / "a", tiny_weights, cache_dir=cache))
    choice = json.loads(next(cache.glob("v1/*/precision.json")).read_text())
    assert choice["dtype"] == "float16"
    assert abs(choice["val_top1_float32"] - choice["val_top1_float16"]) <= 0.001
    shards = list(cache.glob("v1/*/shards/*.safetensors"))
    assert shards and all(load_file(str(s))["features"].dtype == torch.float16 for s in shards)
    finetune(tiny_options(data, tmp_path / "b", tiny_weights, cache_dir=cache))
    head_a = load_file(str(tmp_path / "a" / "head.safetensors"))
    head_b = load_file(str(tmp_path / "b" / "head.safetensors"))
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)
    info = CliRunner().invoke(main, ["cache", "info", "--cache-dir", str(cache), "--json"])
    assert json.loads(info.output)["namespaces"][0]["precision"] == "float16"


def test_rows_stay_float32_where_float16_costs_val_accuracy() -> None:
    """Features whose class signal lies below float16's resolution (steps of 2 near 2048):
    float16 rows cost the head its accuracy, so the rows stay float32; well-scaled ones go
    float16."""
    from edgetl.train.loop import HeadTraining
    from edgetl.train.row_precision import measure

    generator = torch.Generator().manual_seed(0)
    labels = {role: torch.arange(n) % 2 for role, n in (("train", 200), ("val", 100))}

    def features(offset: float, scale: float) -> dict[str, torch.Tensor]:
        return {
            role: offset + scale * (y[:, None].float() + 0.1 * torch.randn(len(y), 8,
                                    generator=generator))
            for role, y in labels.items()
        }  # fmt: skip

    settings = HeadTraining(epochs=20, lr=1e-2, batch_size=32)
    fine = measure(features(2048.0, 0.5), labels, 2, 0, settings)
    assert fine.dtype == "float32" and fine.val_top1_float32 > 0.9 > fine.val_top1_float16
    coarse = measure(features(0.0, 1.0), labels, 2, 0, settings)
    assert coarse.dtype == "float16" and coarse.val_top1_float16 == coarse.val_top1_float32


def test_only_new_images_are_extracted(tmp_path: Path, tiny_weights: Path) -> None:
    """Adding 3 images extracts exactly 3; renaming, moving or removing extracts none; the
    same photos in another dataset are read from the cache."""
    from rich.console import Console

    data = write_folder(tmp_path / "photos", per_class=6)
    cache = tmp_path / "cache"

    def run(name: str, folder: Path = data) -> str:
        console = Console(record=True, width=200)
        options = tiny_options(folder, tmp_path / name, tiny_weights, cache_dir=cache, epochs=2)
        with reporting(console):
            info = finetune(options)
        cached, new = re.search(
            r"feature cache: (\d+) cached, (\d+) new", console.export_text()
        ).groups()
        assert info.metrics.feature_cache in (
            "hit" if new == "0" else f"miss ({new} new, {cached} cached)"
        )
        return info.metrics.feature_cache

    assert run("a") == "miss (18 new, 0 cached)"
    write_folder(tmp_path / "more", classes=3, per_class=1, seed=9)
    for label in range(3):
        (tmp_path / "more" / f"class_{label}" / "img_0.jpg").rename(
            data / f"class_{label}" / "new_0.jpg"
        )
    assert run("b") == "miss (3 new, 18 cached)"
    (data / "class_0" / "img_1.png").rename(data / "class_0" / "renamed.png")
    (data / "class_1" / "img_2.jpg").unlink()
    assert run("c") == "hit"
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(data, copy)
    assert run("d", copy) == "hit"
    assert cache_rows(cache) == 21


def test_unfreeze_trains_the_last_stage(tmp_path: Path, tiny_weights: Path) -> None:
    data = write_folder(tmp_path / "photos", per_class=6)
    meta = finetune(tiny_options(data, tmp_path / "run", tiny_weights, unfreeze=1, epochs=2))
    assert meta.train.unfreeze == 1
    saved = load_file(str(tmp_path / "run" / "backbone.safetensors"))
    original = read_state_dict(tiny_weights)
    changed = [name for name, tensor in saved.items() if not torch.equal(tensor, original[name])]
    assert changed and all(name.startswith(("blocks.4", "conv_head", "bn2")) for name in changed)
    # the run reloads into the model that was trained: it reproduces the recorded test top-1
    from edgetl.train.model import torch_logits

    run = load_run(tmp_path / "run")
    test = run.splits().test
    logits = torch_logits(run.classifier(), test.arrays(run.preprocess))
    top1 = float((logits.argmax(1) == test.labels).mean())
    assert top1 == pytest.approx(meta.metrics.test_top1, abs=1e-4)


def test_cli_refuses_to_overwrite_a_run(tiny_run: Path, tiny_weights: Path) -> None:
    before = (tiny_run / "head.safetensors").read_bytes()
    result = CliRunner().invoke(
        main,
        [
            "finetune",
            "--data",
            "digits",
            "--out",
            str(tiny_run),
            "--backbone",
            TINY_BACKBONE,
            "--weights",
            str(tiny_weights),
        ],
    )
    assert result.exit_code == 2
    assert "--force" in result.output
    assert (tiny_run / "head.safetensors").read_bytes() == before


def test_cli_bad_data_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["finetune", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "missing" in result.output and "no such directory" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--val-fraction", "1.0"], "--val-fraction 1.0"),
        (["--test-fraction", "0"], "--test-fraction 0.0"),
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], "leave no training images"),
        (["--epochs", "0"], "--epochs 0"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--lr", "inf"], "--lr inf: must be a positive finite number"),
        (["--lr", "nan"], "--lr nan: must be a positive finite number"),
        (["--image-size", "0"], "--image-size 0: give 16..1024 pixels"),
        (["--unfreeze", "most"], "--unfreeze most: give a number of stages (0, 1, 2, ...) or auto"),
        (["--unfreeze", "-1"], "--unfreeze -1: must be at least 0"),
        (["--unfreeze", "auto", "--unfreeze-tolerance", "-1"], "--unfreeze-tolerance -1.0"),
    ],
)
def test_cli_bad_numbers_exit_2_naming_the_option(
    tmp_path: Path, tiny_weights: Path, args: list[str], message: str
) -> None:
    data = write_folder(tmp_path / "photos", per_class=4)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "finetune",
            "--data",
            str(data),
            "--out",
            str(out),
            "--backbone",
            TINY_BACKBONE,
            "--weights",
            str(tiny_weights),
            *args,
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_cli_single_class_exits_2(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "one", classes=1, per_class=6)
    result = CliRunner().invoke(
        main, ["finetune", "--data", str(data), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "only one class folder" in " ".join(result.output.split())


def test_cli_unknown_backbone_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "finetune",
            "--data",
            "digits",
            "--backbone",
            "efficientnet_lite",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2
    assert "Did you mean" in result.output


def test_a_diverging_run_exits_1_and_writes_nothing(tmp_path: Path, tiny_weights: Path) -> None:
    """`--lr 1e30` saved a run with NaN weights, exit 0."""
    data = write_folder(tmp_path / "photos", per_class=4)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["finetune", "--data", str(data), "--out", str(out), "--backbone", TINY_BACKBONE]
        + ["--weights", str(tiny_weights), "--lr", "1e30", "--epochs", "3", "--no-cache"],
    )
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output or "non-finite" in result.output
    assert not out.exists()


def test_a_damaged_cache_shard_is_recomputed(tmp_path: Path, tiny_weights: Path) -> None:
    """Corrupted feature bytes under a valid header were a "hit": a NaN head, exit 0."""
    from rich.console import Console

    data = write_folder(tmp_path / "photos", per_class=6)
    cache = tmp_path / "cache"
    first = finetune(tiny_options(data, tmp_path / "a", tiny_weights, cache_dir=cache))  # fmt: skip
    (shard,) = cache.glob("v1/*/shards/*.safetensors")
    raw = bytearray(shard.read_bytes())
    raw[-64:] = b"\xff" * 64  # NaN bit patterns at the end of the last rows' features
    shard.write_bytes(bytes(raw))
    console = Console(record=True, width=200)
    with reporting(console):
        second = finetune(tiny_options(data, tmp_path / "b", tiny_weights, cache_dir=cache))
    text = console.export_text()
    assert f"shard {shard.name} is damaged: set aside, its rows are extracted again" in text
    assert second.metrics.feature_cache == "miss (18 new, 0 cached)"
    assert second.metrics.val_top1 == first.metrics.val_top1
    assert second.metrics.test_top1 == first.metrics.test_top1
    assert shard.with_suffix(".damaged").is_file() and cache_rows(cache) == 18


def test_one_decode_per_image_and_a_bad_image_keeps_the_rows_before_it(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scanning reads bytes and headers only; extraction decodes each image once. A
    truncated image stops it with exit 2 naming the file, after the rows before it were
    stored; the re-run after the fix extracts only the rest."""
    from edgetl.core.data import imageset
    from edgetl.core.errors import EdgetlError

    data = tmp_path / "photos"  # train/, val/, test/: extracted in that order
    for role, count, seed in (("train", 6, 0), ("val", 2, 1), ("test", 2, 2)):
        write_folder(data / role, per_class=count, seed=seed)
    decoded: list[str] = []
    real = imageset.read_image

    def counted(path: Path, *args: object) -> object:
        decoded.append(path.relative_to(data).as_posix())
        return real(path, *args)

    monkeypatch.setattr(imageset, "read_image", counted)
    cache = tmp_path / "cache"
    options = {"cache_dir": cache, "epochs": 2, "workers": 0, "batch_size": 4}
    finetune(tiny_options(data, tmp_path / "a", tiny_weights, **options))
    assert len(decoded) == 30 == len(set(decoded))  # each of the 30 images, once

    def add(role: str, label: int, seed: int) -> None:
        extra = write_folder(tmp_path / f"extra{seed}", classes=label + 1, per_class=1, seed=seed)
        (extra / f"class_{label}" / "img_0.jpg").rename(data / role / f"class_{label}" / "new.jpg")

    for label in range(3):
        add("train", label, 10 + label)  # three new images before the bad one
    good = data / "test" / "class_0" / "img_0.jpg"
    bad = data / "test" / "class_0" / "zz_cut.jpg"  # the last of test/class_0
    whole = good.read_bytes()
    bad.write_bytes(whole[: len(whole) // 2])  # a valid header, the pixels cut
    add("test", 1, 20)  # and two after it
    add("test", 2, 21)
    with pytest.raises(EdgetlError, match="zz_cut.jpg: cannot decode this image"):
        finetune(tiny_options(data, tmp_path / "b", tiny_weights, **options))
    assert cache_rows(cache) == 30 + 3  # the rows before the bad image are kept
    bad.unlink()
    decoded.clear()
    info = finetune(tiny_options(data, tmp_path / "c", tiny_weights, **options))
    assert info.metrics.feature_cache == "miss (2 new, 33 cached)"
    assert sorted(decoded) == ["test/class_1/new.jpg", "test/class_2/new.jpg"]


def test_a_stage_reports_to_its_context_and_says_nothing_without_one(
    tmp_path: Path, tiny_weights: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Progress and messages are events (core/events): the Python API's default reporter is
    quiet; the caller's reporter gets them all, the nested steps' too."""
    from rich.console import Console

    data = write_folder(tmp_path / "photos", per_class=6)
    finetune(tiny_options(data, tmp_path / "quiet", tiny_weights, epochs=2))
    said = capfd.readouterr()
    assert "feature cache" not in said.out + said.err and "kept epoch" not in said.err
    console = Console(record=True, width=200)
    with reporting(console):
        finetune(tiny_options(data, tmp_path / "told", tiny_weights, epochs=2))
    text = console.export_text()
    assert "data: " in text and "feature cache: " in text and "kept epoch" in text


def test_the_progress_bar_ends_on_the_kept_epoch(tmp_path: Path, tiny_weights: Path) -> None:
    from rich.console import Console

    data = write_folder(tmp_path / "photos", per_class=6)
    console = Console(record=True, width=200)
    with reporting(console):
        info = finetune(tiny_options(data, tmp_path / "run", tiny_weights, epochs=12))
    text = console.export_text()
    assert f"kept epoch {info.metrics.best_epoch}: val loss" in text


def test_cache_info_and_prune_keep_the_rows_recent_runs_used(
    tmp_path: Path, tiny_weights: Path
) -> None:
    import os
    import time

    cache = tmp_path / "cache"
    old_data = write_folder(tmp_path / "old", per_class=6, seed=1)
    new_data = write_folder(tmp_path / "new", per_class=6, seed=2)
    finetune(tiny_options(old_data, tmp_path / "a", tiny_weights, cache_dir=cache, epochs=2))
    (record,) = cache.glob("v1/*/used/*.digests")
    ten_days = time.time() - 10 * 86400
    os.utime(record, (ten_days, ten_days))
    finetune(tiny_options(new_data, tmp_path / "b", tiny_weights, cache_dir=cache, epochs=2))
    (cache / "0123abcd.safetensors").write_bytes(b"an entry of the old whole-dataset format")
    runner = CliRunner()
    shown = runner.invoke(main, ["cache", "info", "--cache-dir", str(cache), "--json"])
    assert shown.exit_code == 0, shown.output
    (entry,) = json.loads(shown.output)["namespaces"]
    assert entry["rows"] == 36 and entry["backbone"] == TINY_BACKBONE

    dry = runner.invoke(main, ["cache", "prune", "--cache-dir", str(cache), "--unused-days", "5",
                               "--dry-run"])  # fmt: skip
    assert dry.exit_code == 0 and "would remove 18 rows" in dry.output and cache_rows(cache) == 36
    pruned = runner.invoke(
        main, ["cache", "prune", "--cache-dir", str(cache), "--unused-days", "5"]
    )
    assert pruned.exit_code == 0 and "removed 18 rows" in pruned.output, pruned.output
    assert cache_rows(cache) == 18 and not (cache / "0123abcd.safetensors").exists()
    again = finetune(
        tiny_options(new_data, tmp_path / "c", tiny_weights, cache_dir=cache, epochs=2)
    )
    assert again.metrics.feature_cache == "hit"  # the recent run's rows were kept
    bad = runner.invoke(main, ["cache", "prune", "--cache-dir", str(cache), "--unused-days", "-1"])
    assert bad.exit_code == 2 and "--unused-days" in bad.output


def test_choose_depth_keeps_the_smallest_k_within_the_tolerance() -> None:
    from edgetl.train.depth import DepthTrial, choose_depth, in_words

    flat = [DepthTrial(0, 0.90, 0.3, 1), DepthTrial(1, 0.904, 0.3, 9), DepthTrial(2, 0.903, 0.3, 9)]
    assert choose_depth(flat, 0.5).stages == 0
    assert "frozen features are enough" in in_words(flat, choose_depth(flat, 0.5), 0.5)
    gap = [DepthTrial(0, 0.60, 1.0, 1), DepthTrial(1, 0.70, 0.8, 9), DepthTrial(2, 0.702, 0.7, 9)]
    assert choose_depth(gap, 0.5).stages == 1  # 2 is better by 0.2 pt: within the tolerance
    assert choose_depth(gap, 0.1).stages == 2
    assert "differs from ImageNet" in in_words(gap, choose_depth(gap, 0.5), 0.5)


def test_unfreeze_auto_reports_every_depth_and_keeps_what_val_says(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """Random tiny-backbone features are poor: fine-tuning gains many points on val, so a
    K > 0 is kept; with a tolerance larger than that gain, K = 0 is."""
    data = write_folder(tmp_path / "photos", per_class=12)
    runs = {}
    for name, tolerance in (("helps", 0.5), ("tolerant", 60.0)):
        options = tiny_options(
            data, tmp_path / name, tiny_weights, epochs=5, unfreeze="auto",
            unfreeze_tolerance=tolerance, cache_dir=tmp_path / "cache",
        )  # fmt: skip
        runs[name] = finetune(options)
    helps = runs["helps"].metrics.unfreeze_auto
    assert [t["stages"] for t in helps["trials"]] == [0, 1, 2]
    probe, best = helps["trials"][0], max(helps["trials"], key=lambda t: t["val_top1"])
    assert best["val_top1"] - probe["val_top1"] > 0.1  # fine-tuning helped here
    assert helps["chosen"] > 0 and runs["helps"].train.unfreeze == helps["chosen"]
    kept = helps["trials"][helps["chosen"]]
    assert runs["helps"].metrics.val_top1 == kept["val_top1"]
    tolerant = runs["tolerant"].metrics.unfreeze_auto
    assert tolerant["chosen"] == 0 and runs["tolerant"].train.unfreeze == 0
    assert "frozen features are enough" in tolerant["finding"]
    # The kept backbone is the one written: frozen for K = 0, changed for K > 0.
    frozen = read_state_dict(tiny_weights)
    for name, changed in (("helps", True), ("tolerant", False)):
        written = load_file(str(tmp_path / name / "backbone.safetensors"))
        differs = any(not torch.equal(frozen[k], written[k]) for k in written if k in frozen)
        assert differs == changed, name


def test_the_scratch_baseline_is_measured_and_said_in_words(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """A small CNN from scratch on the same split, against the linear probe on the tiny
    backbone's random features; the words follow the gap."""
    from edgetl.train.depth import against_scratch

    data = write_folder(tmp_path / "photos", per_class=12)
    info = finetune(
        tiny_options(data, tmp_path / "run", tiny_weights, epochs=8, scratch_baseline=True)
    )
    found = info.metrics.scratch_baseline
    assert 0.0 <= found["val_top1"] <= 1.0 and found["params"] > 10_000
    assert found["probe_val_top1"] == pytest.approx(info.metrics.val_top1)
    assert found["finding"] == against_scratch(found["probe_val_top1"], found["val_top1"])
    assert "domain gap or negative transfer" in against_scratch(0.50, 0.80)
    assert "transfer helps here" in against_scratch(0.90, 0.60)
