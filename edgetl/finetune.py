"""Fine-tuning: train a new head on cached features of a frozen backbone (+ optional unfreeze)."""

from __future__ import annotations

import copy
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

from edgetl import __version__
from edgetl.artifacts import atomic_write_json, atomic_write_text, refuse_overwrite, staged_dir
from edgetl.backbones import DEFAULT_BACKBONE, load_backbone, trainable_tail
from edgetl.data import ImageSet, Preprocess, load_dataset
from edgetl.errors import EdgetlError
from edgetl.features import cached_features, default_cache_dir
from edgetl.model import BACKBONE_WEIGHTS, HEAD_WEIGHTS, RUN_FILE, RUN_SCHEMA, Classifier, Head
from edgetl.ui import progress
from edgetl.versions import versions


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
    patience: int = 5
    cache_dir: Path | None = None
    use_cache: bool = True
    force: bool = False


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


def finetune(opts: FinetuneOptions, console: Console) -> dict[str, Any]:
    """Run the whole stage and write the run directory; returns the run's metadata."""
    if opts.epochs < 1:
        raise EdgetlError(f"--epochs {opts.epochs}: must be at least 1")
    refuse_overwrite(opts.out, opts.force, "run")
    device = resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    started = time.perf_counter()

    splits = load_dataset(opts.data, opts.val_fraction, opts.seed)
    console.print(
        f"data: {splits.source}: {len(splits.classes)} classes, {len(splits.train)} train / "
        f"{len(splits.val)} val ({splits.val_strategy})"
    )
    backbone = load_backbone(opts.backbone, opts.weights, opts.image_size)
    pre = backbone.preprocess
    console.print(
        f"backbone: {backbone.name} ({backbone.weights_source}), input {pre.size}px, "
        f"{pre.interpolation}, crop {pre.crop_pct}, device {device}"
    )

    cache_dir = (opts.cache_dir or default_cache_dir()) if opts.use_cache else None
    t0 = time.perf_counter()
    feats, hit = cached_features(backbone, splits, device, opts.batch_size, cache_dir, console)
    feature_s = time.perf_counter() - t0
    cache_state = "off" if cache_dir is None else ("hit" if hit else "miss (stored)")
    console.print(f"feature cache: {cache_state} ({feature_s:.1f} s)")

    head = Head(backbone.num_features, len(splits.classes), opts.hidden)
    head.set_feature_stats(feats["train"])
    train_y = torch.from_numpy(splits.train.labels)
    val_y = torch.from_numpy(splits.val.labels)
    history = train_head(head, feats["train"], train_y, feats["val"], val_y, opts, console)

    if opts.unfreeze:
        model = Classifier(backbone.model, head)
        history += train_unfrozen(model, splits.train, splits.val, pre, opts, device, console)

    final_phase = [row for row in history if row["phase"] == history[-1]["phase"]]
    best = min(final_phase, key=lambda row: row["val_loss"])
    elapsed = time.perf_counter() - started
    meta = {
        "schema": RUN_SCHEMA,
        "edgetl": __version__,
        "backbone": backbone.describe(),
        "head": {"kind": "mlp" if opts.hidden else "linear", "hidden": opts.hidden},
        "classes": splits.classes,
        "preprocess": pre.to_dict(),
        "data": splits.describe(),
        "train": {
            "epochs": opts.epochs,
            "lr": opts.lr,
            "batch_size": opts.batch_size,
            "seed": opts.seed,
            "device": str(device),
            "amp": device.type == "cuda",
            "unfreeze": opts.unfreeze,
            "patience": opts.patience,
        },
        "metrics": {
            "train_top1": best["train_top1"],
            "val_top1": best["val_top1"],
            "val_loss": best["val_loss"],
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "feature_cache": cache_state,
            "feature_s": round(feature_s, 2),
            "time_s": round(elapsed, 2),
        },
        "versions": versions(),
        "command": sys.argv,
    }
    write_run(opts.out, backbone.model, head, meta, history, opts.force)
    return meta


def write_run(
    out: Path,
    backbone: nn.Module,
    head: Head,
    meta: dict[str, Any],
    history: list[dict[str, Any]],
    force: bool,
) -> None:
    from safetensors.torch import save_file

    with staged_dir(out, force, "run") as tmp:
        save_file(
            {k: v.contiguous() for k, v in backbone.state_dict().items()},
            str(tmp / BACKBONE_WEIGHTS),
        )
        save_file(head.state_dict(), str(tmp / HEAD_WEIGHTS))
        atomic_write_text(tmp / "history.csv", history_csv(history))
        atomic_write_json(tmp / RUN_FILE, meta)


def history_csv(history: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


class EarlyStopping:
    """Keep the weights of the best val-loss epoch; stop after `patience` epochs without gain."""

    def __init__(self, patience: int, min_delta: float = 1e-4):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_state, self.stale = math.inf, None, 0

    def should_stop(self, val_loss: float, module: nn.Module, epoch: int, console: Console) -> bool:
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_state, self.stale = (
                val_loss,
                copy.deepcopy(module.state_dict()),
                0,
            )
            return False
        self.stale += 1
        if self.stale < self.patience:
            return False
        console.print(f"early stop at epoch {epoch}: no val-loss gain in {self.stale} epochs")
        return True

    def restore(self, module: nn.Module) -> None:
        module.load_state_dict(self.best_state)


def train_head(
    head: Head,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    opts: FinetuneOptions,
    console: Console,
) -> list[dict[str, Any]]:
    """Mini-batch AdamW on cached features, cosine schedule, early stopping on val loss."""
    generator = torch.Generator().manual_seed(opts.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=opts.lr, weight_decay=1e-2)
    steps = opts.epochs * math.ceil(len(train_x) / opts.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    history: list[dict[str, Any]] = []
    stopper = EarlyStopping(opts.patience)
    with progress(console) as bar:
        task = bar.add_task("train head", total=opts.epochs, info="")
        for epoch in range(1, opts.epochs + 1):
            head.train()
            order = torch.randperm(len(train_x), generator=generator)
            total, correct, loss_sum = 0, 0, 0.0
            for start in range(0, len(order), opts.batch_size):
                idx = order[start : start + opts.batch_size]
                logits = head(train_x[idx])
                loss = loss_fn(logits, train_y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(1) == train_y[idx]).sum())
                total += len(idx)
            val_loss, val_top1 = evaluate_logits(head_logits(head, val_x), val_y)
            history.append(
                epoch_row("head", epoch, loss_sum / total, correct / total, val_loss, val_top1)
            )
            bar.update(task, advance=1, info=f"val loss {val_loss:.3f} top-1 {val_top1:.1%}")
            if stopper.should_stop(val_loss, head, epoch, console):
                break
    stopper.restore(head)
    head.eval()
    return history


def head_logits(head: Head, features: torch.Tensor) -> torch.Tensor:
    head.eval()
    with torch.inference_mode():
        return head(features)


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits.float(), labels).item()
    return loss, float((logits.argmax(1) == labels).float().mean())


def epoch_row(
    phase: str, epoch: int, train_loss: float, train_top1: float, val_loss: float, val_top1: float
) -> dict[str, Any]:
    return {
        "phase": phase,
        "epoch": epoch,
        "train_loss": round(train_loss, 5),
        "train_top1": round(train_top1, 5),
        "val_loss": round(val_loss, 5),
        "val_top1": round(val_top1, 5),
    }


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
            history.append(
                epoch_row("unfreeze", epoch, loss_sum / total, correct / total, val_loss, val_top1)
            )
            bar.update(task, advance=1, info=f"val loss {val_loss:.3f} top-1 {val_top1:.1%}")
            if stopper.should_stop(val_loss, model, epoch, console):
                break
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
