"""Fine-tuning: train a new head on cached features of a frozen backbone (+ optional unfreeze)."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from edgetl.core.constants import DEFAULT_BACKBONE
from edgetl.core.dataset import BUILTIN_DATASETS, Splits, check_fractions, load_dataset
from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_text, sha256_file, staged_dir
from edgetl.core.outputs import check_not_input, check_writable, claim
from edgetl.core.records import RUN_FILE, DataInfo, HeadInfo, RunInfo, TrainInfo
from edgetl.core.ui import make_console
from edgetl.core.versions import versions
from edgetl.train.backbones import Backbone, load_backbone
from edgetl.train.distributed import Group, join, leave
from edgetl.train.extract import default_workers
from edgetl.train.features import cached_features, default_cache_dir, row_precision
from edgetl.train.loop import (
    HeadTraining,
    check_weights,
    eval_logits,
    evaluate_logits,
    train_head,
)
from edgetl.train.model import BACKBONE_WEIGHTS, HEAD_WEIGHTS, Classifier, Head
from edgetl.train.unfreeze import predict, train_unfrozen

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024  # below 16 px a backbone's strides leave no pixels


@dataclass
class FinetuneOptions:
    data: str
    out: Path
    backbone: str = DEFAULT_BACKBONE
    weights: Path | None = None
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    image_size: int | None = None
    device: str = "auto"
    unfreeze: int = 0
    hidden: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    patience: int = 5
    cache_dir: Path | None = None
    use_cache: bool = True
    force: bool = False
    workers: int | None = None  # decoding workers; None: the cores this process may use

    def head_training(self) -> HeadTraining:
        return HeadTraining(self.epochs, self.lr, self.batch_size, self.seed, self.patience)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EdgetlError(
            "--device cuda: no CUDA device is visible to torch here; use --device cpu"
        )
    if name not in ("cpu", "cuda"):
        raise EdgetlError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device(name)


def finetune(opts: FinetuneOptions, console: Console) -> RunInfo | None:
    """Run the whole stage and write the run directory; returns the run's metadata.

    Under torchrun, every rank extracts its share of the features; rank 0 then trains the
    head and writes the run (the other ranks return None)."""
    _check_options(opts)
    group = join()
    if group is not None and not opts.use_cache:
        raise EdgetlError(
            "--no-cache with several ranks: the ranks hand their features to rank 0 through "
            "the feature cache; drop --no-cache (or give --cache-dir)"
        )
    try:
        if group is not None and not group.leader:
            _extract_share(opts, group)
            return None
        return _finetune_here(opts, console, group)
    finally:
        leave(group)


def _extract_share(opts: FinetuneOptions, group: Group) -> None:
    """A rank other than 0: its share of the images missing from the cache, then (with
    --unfreeze) its share of every batch of the fine-tuning, then done."""
    quiet = make_console(quiet=True)
    device = group.device(resolve_device(opts.device))
    torch.manual_seed(opts.seed)
    splits = load_dataset(opts.data, opts.val_fraction, opts.test_fraction, opts.seed)
    backbone = load_backbone(opts.backbone, opts.weights, opts.image_size)
    workers = default_workers() if opts.workers is None else opts.workers
    cached_features(
        backbone, splits, device, opts.batch_size, workers, _cache_dir(opts), quiet, group
    )
    if opts.unfreeze:  # the head's weights come from rank 0 when DDP wraps the model
        head = Head(backbone.num_features, len(splits.classes), opts.hidden)
        model = Classifier(backbone.model, head)
        settings = opts.head_training()
        train_unfrozen(
            model, splits.train, splits.val, backbone.preprocess, opts.unfreeze, settings,
            device, quiet, group,
        )  # fmt: skip


def _cache_dir(opts: FinetuneOptions) -> Path | None:
    return (opts.cache_dir or default_cache_dir()) if opts.use_cache else None


def _finetune_here(opts: FinetuneOptions, console: Console, group: Group | None) -> RunInfo:
    cache_dir = _cache_dir(opts)
    data_dir = None if opts.data in BUILTIN_DATASETS else Path(opts.data)
    check_not_input(
        opts.out, {"--data": data_dir, "--weights": opts.weights, "the feature cache": cache_dir}
    )
    if cache_dir is not None:
        check_writable(cache_dir / "entry", "--cache-dir (or EDGETL_CACHE_DIR)")
    notes: list[str] = []
    with claim(opts.out, opts.force, "run", RUN_FILE, notes):
        for note in notes:
            console.print(note)
        return _finetune(opts, cache_dir, console, group)


def _finetune(
    opts: FinetuneOptions, cache_dir: Path | None, console: Console, group: Group | None
) -> RunInfo:
    device = resolve_device(opts.device)
    if group is not None:
        device = group.device(device)
    torch.manual_seed(opts.seed)
    started = time.perf_counter()

    splits = load_dataset(opts.data, opts.val_fraction, opts.test_fraction, opts.seed)
    console.print(
        f"data: {splits.source}: {len(splits.classes)} classes, {splits.sizes()} "
        f"({splits.strategy}); val chooses (early stopping, INT8 guard), test is only reported"
    )
    backbone = load_backbone(opts.backbone, opts.weights, opts.image_size)
    pre = backbone.preprocess
    console.print(
        f"backbone: {backbone.name} ({backbone.weights_source}), input {pre.size}px, "
        f"{pre.interpolation}, crop {pre.crop_pct}, device {device}"
    )

    workers = default_workers() if opts.workers is None else opts.workers
    feats, cache = cached_features(
        backbone, splits, device, opts.batch_size, workers, cache_dir, console, group
    )
    feature_s = cache.seconds
    cache_state = "off" if cache_dir is None else cache.state
    console.print(f"feature cache: {'off, ' if cache_dir is None else ''}{cache.line()}")
    if cache_dir is not None:  # train on the rows as the cache keeps them
        precision = row_precision(
            cache_dir, backbone, device, feats, splits, opts.hidden, opts.head_training(), console
        )
        feats = {role: precision.rounded(rows) for role, rows in feats.items()}

    head, history, test_logits = _train(opts, splits, backbone, feats, device, console, group)
    final_phase = [row for row in history if row["phase"] == history[-1]["phase"]]
    best = min(final_phase, key=lambda row: row["val_loss"])
    _, test_top1 = evaluate_logits(test_logits, torch.from_numpy(splits.test.labels))
    metrics = {
        "train_top1": best["train_top1"],
        "val_top1": best["val_top1"],
        "val_loss": best["val_loss"],
        "test_top1": round(test_top1, 5),
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "feature_cache": cache_state,
        "feature_s": round(feature_s, 2),
        "time_s": round(time.perf_counter() - started, 2),
    }
    info = _run_info(opts, splits, backbone, device, metrics)
    check_weights(head, "the head")
    check_weights(backbone.model, "the backbone")
    write_run(opts.out, backbone.model, head, info, history, opts.force)
    return info


def _train(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    feats: dict[str, torch.Tensor],
    device: torch.device,
    console: Console,
    group: Group | None,
) -> tuple[Head, list[dict[str, Any]], torch.Tensor]:
    """The head on cached features, then (--unfreeze K) the last K stages with it; returns
    the head, the history of every epoch and the test logits of the model kept."""
    head = Head(backbone.num_features, len(splits.classes), opts.hidden)
    head.set_feature_stats(feats["train"])
    train_y = torch.from_numpy(splits.train.labels)
    val_y = torch.from_numpy(splits.val.labels)
    settings = opts.head_training()
    history = train_head(head, feats["train"], train_y, feats["val"], val_y, settings, console)
    if not opts.unfreeze:
        return head, history, eval_logits(head, feats["test"])
    model = Classifier(backbone.model, head)
    pre = backbone.preprocess
    history += train_unfrozen(
        model, splits.train, splits.val, pre, opts.unfreeze, settings, device, console, group
    )
    # train_unfrozen hands the model back on the CPU
    test_logits, _ = predict(model, splits.test, pre, opts.batch_size, torch.device("cpu"))
    return head, history, test_logits


def _run_info(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    device: torch.device,
    metrics: dict[str, Any],
) -> RunInfo:
    return RunInfo(
        backbone=backbone.describe(),
        head=HeadInfo("mlp" if opts.hidden else "linear", opts.hidden),
        classes=splits.classes,
        preprocess=backbone.preprocess,
        data=DataInfo.from_splits(splits),
        train=TrainInfo(
            epochs=opts.epochs,
            lr=opts.lr,
            batch_size=opts.batch_size,
            seed=opts.seed,
            patience=opts.patience,
            device=str(device),
            amp=device.type == "cuda",
            unfreeze=opts.unfreeze,
        ),
        metrics=metrics,
        versions=versions(),
        command=list(sys.argv),
        weights={},  # write_run sets the sha256 of the files it writes
    )


def _check_options(opts: FinetuneOptions) -> None:
    check_fractions(opts.val_fraction, opts.test_fraction)
    for option, value, least in (
        ("--epochs", opts.epochs, 1),
        ("--batch-size", opts.batch_size, 1),
        ("--patience", opts.patience, 1),
        ("--hidden", opts.hidden, 0),
        ("--unfreeze", opts.unfreeze, 0),
        ("--workers", 0 if opts.workers is None else opts.workers, 0),
    ):
        if value < least:
            raise EdgetlError(f"{option} {value}: must be at least {least}")
    if opts.image_size is not None and not MIN_IMAGE_SIZE <= opts.image_size <= MAX_IMAGE_SIZE:
        raise EdgetlError(
            f"--image-size {opts.image_size}: give {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} pixels, or "
            "leave it out for the backbone's own size"
        )
    if not (math.isfinite(opts.lr) and opts.lr > 0):
        raise EdgetlError(f"--lr {opts.lr}: must be a positive finite number, e.g. 1e-3")


def write_run(
    out: Path,
    backbone: nn.Module,
    head: Head,
    info: RunInfo,
    history: list[dict[str, Any]],
    force: bool,
) -> None:
    from safetensors.torch import save_file

    with staged_dir(out, force, "run", RUN_FILE) as tmp:
        save_file(
            {k: v.contiguous() for k, v in backbone.state_dict().items()},
            str(tmp / BACKBONE_WEIGHTS),
        )
        save_file(head.state_dict(), str(tmp / HEAD_WEIGHTS))
        atomic_write_text(tmp / "history.csv", history_csv(history))
        info.weights = {name: sha256_file(tmp / name) for name in (BACKBONE_WEIGHTS, HEAD_WEIGHTS)}
        info.write(tmp)


def history_csv(history: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()
