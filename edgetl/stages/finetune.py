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

import numpy as np
import torch
from rich.console import Console
from torch import nn

from edgetl.core.constants import DEFAULT_BACKBONE
from edgetl.core.dataset import BUILTIN_DATASETS, ImageSet, check_fractions, load_dataset
from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_text, sha256_file, staged_dir
from edgetl.core.outputs import check_not_input, check_writable, claim
from edgetl.core.preprocess import Preprocess
from edgetl.core.records import RUN_FILE, DataInfo, HeadInfo, RunInfo, TrainInfo
from edgetl.core.ui import progress
from edgetl.core.versions import versions
from edgetl.train.backbones import load_backbone, trainable_tail
from edgetl.train.features import cached_features, default_cache_dir
from edgetl.train.loop import (
    EarlyStopping,
    HeadTraining,
    check_finite,
    check_weights,
    epoch_row,
    eval_logits,
    evaluate_logits,
    train_head,
)
from edgetl.train.model import BACKBONE_WEIGHTS, HEAD_WEIGHTS, Classifier, Head

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


def finetune(opts: FinetuneOptions, console: Console) -> RunInfo:
    """Run the whole stage and write the run directory; returns the run's metadata."""
    _check_options(opts)
    cache_dir = (opts.cache_dir or default_cache_dir()) if opts.use_cache else None
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
        return _finetune(opts, cache_dir, console)


def _finetune(opts: FinetuneOptions, cache_dir: Path | None, console: Console) -> RunInfo:
    device = resolve_device(opts.device)
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

    t0 = time.perf_counter()
    feats, hit = cached_features(backbone, splits, device, opts.batch_size, cache_dir, console)
    feature_s = time.perf_counter() - t0
    cache_state = "off" if cache_dir is None else ("hit" if hit else "miss (stored)")
    console.print(f"feature cache: {cache_state} ({feature_s:.1f} s)")

    head = Head(backbone.num_features, len(splits.classes), opts.hidden)
    head.set_feature_stats(feats["train"])
    train_y = torch.from_numpy(splits.train.labels)
    val_y = torch.from_numpy(splits.val.labels)
    settings = opts.head_training()
    history = train_head(head, feats["train"], train_y, feats["val"], val_y, settings, console)
    test_logits = eval_logits(head, feats["test"])

    if opts.unfreeze:
        model = Classifier(backbone.model, head)
        history += train_unfrozen(model, splits.train, splits.val, pre, opts, device, console)
        # train_unfrozen hands the model back on the CPU
        cpu = torch.device("cpu")
        test_logits, _ = predict(model, splits.test, pre, opts.batch_size, cpu)

    final_phase = [row for row in history if row["phase"] == history[-1]["phase"]]
    best = min(final_phase, key=lambda row: row["val_loss"])
    _, test_top1 = evaluate_logits(test_logits, torch.from_numpy(splits.test.labels))
    elapsed = time.perf_counter() - started
    info = RunInfo(
        backbone=backbone.describe(),
        head=HeadInfo("mlp" if opts.hidden else "linear", opts.hidden),
        classes=splits.classes,
        preprocess=pre,
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
        metrics={
            "train_top1": best["train_top1"],
            "val_top1": best["val_top1"],
            "val_loss": best["val_loss"],
            "test_top1": round(test_top1, 5),
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "feature_cache": cache_state,
            "feature_s": round(feature_s, 2),
            "time_s": round(elapsed, 2),
        },
        versions=versions(),
        command=list(sys.argv),
    )
    check_weights(head, "the head")
    check_weights(backbone.model, "the backbone")
    write_run(opts.out, backbone.model, head, info, history, opts.force)
    return info


def _check_options(opts: FinetuneOptions) -> None:
    check_fractions(opts.val_fraction, opts.test_fraction)
    for option, value, least in (
        ("--epochs", opts.epochs, 1),
        ("--batch-size", opts.batch_size, 1),
        ("--patience", opts.patience, 1),
        ("--hidden", opts.hidden, 0),
        ("--unfreeze", opts.unfreeze, 0),
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


def train_unfrozen(
    model: Classifier,
    train: ImageSet,
    val: ImageSet,
    pre: Preprocess,
    opts: FinetuneOptions,
    device: torch.device,
    console: Console,
) -> list[dict[str, Any]]:
    """Fine-tune the last K backbone stages with the head (warm-started on features).

    BatchNorm statistics stay frozen (eval mode): small datasets make them worse, not better.
    """
    for param in model.backbone.parameters():
        param.requires_grad_(False)
    tail = trainable_tail(model.backbone, opts.unfreeze)
    for param in tail:
        param.requires_grad_(True)
    model.to(device).eval()
    optimizer = torch.optim.AdamW(
        [{"params": tail, "lr": opts.lr * 0.1}, {"params": model.head.parameters(), "lr": opts.lr}],
        weight_decay=1e-2,
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    rng = np.random.default_rng(opts.seed)
    history: list[dict[str, Any]] = []
    stopper = EarlyStopping(opts.patience)
    with progress(console) as bar:
        task = bar.add_task(f"unfreeze {opts.unfreeze}", total=opts.epochs, info="")
        for epoch in range(1, opts.epochs + 1):
            shuffled = train.subset(rng.permutation(len(train)))
            total, correct, loss_sum = 0, 0, 0.0
            for images, labels in shuffled.batches(pre, opts.batch_size):
                x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
                with torch.autocast(device.type, enabled=use_amp):
                    logits = model(x)
                    loss = loss_fn(logits.float(), y)
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                total += len(y)
            val_logits, val_y = predict(model, val, pre, opts.batch_size, device)
            val_loss, val_top1 = evaluate_logits(val_logits, val_y)
            check_finite(loss_sum / total, val_loss, epoch, opts.lr)
            history.append(
                epoch_row("unfreeze", epoch, loss_sum / total, correct / total, val_loss, val_top1)
            )
            bar.update(task, advance=1, info=f"val loss {val_loss:.3f} top-1 {val_top1:.1%}")
            if stopper.should_stop(val_loss, model, epoch, console):
                break
        bar.update(task, info=stopper.kept(history))
    stopper.restore(model)
    model.cpu().eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return history


def predict(
    model: nn.Module, images: ImageSet, pre: Preprocess, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    outputs = []
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for batch, _ in images.batches(pre, batch_size):
            outputs.append(model(torch.from_numpy(batch).to(device)).float().cpu())
    return torch.cat(outputs), torch.from_numpy(images.labels)
