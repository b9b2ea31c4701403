"""Fine-tuning the last backbone stages with the head: the same loop as the head's (loop.py),
with mixed precision on CUDA and images instead of cached features."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from edgetl.core.dataset import ImageSet
from edgetl.core.preprocess import Preprocess
from edgetl.train.backbones import trainable_tail
from edgetl.train.loop import HeadTraining, Loop, evaluate_logits, fit
from edgetl.train.model import Classifier


def train_unfrozen(
    model: Classifier,
    train: ImageSet,
    val: ImageSet,
    pre: Preprocess,
    stages: int,
    settings: HeadTraining,
    device: torch.device,
    console: Console,
) -> list[dict[str, Any]]:
    """Fine-tune the last K backbone stages with the head (warm-started on features).

    BatchNorm statistics stay frozen (eval mode): small datasets make them worse, not better.
    """
    for param in model.backbone.parameters():
        param.requires_grad_(False)
    tail = trainable_tail(model.backbone, stages)
    for param in tail:
        param.requires_grad_(True)
    model.to(device).eval()
    lr = settings.lr
    optimizer = torch.optim.AdamW(
        [{"params": tail, "lr": lr * 0.1}, {"params": model.head.parameters(), "lr": lr}],
        weight_decay=1e-2,
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    rng = np.random.default_rng(settings.seed)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        shuffled = train.subset(rng.permutation(len(train)))
        for images, labels in shuffled.batches(pre, settings.batch_size):
            yield torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device.type, enabled=use_amp):
            logits = model(x)
            loss = loss_fn(logits.float(), y)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return logits, loss

    def validate() -> tuple[float, float]:
        return evaluate_logits(*predict(model, val, pre, settings.batch_size, device))

    loop = Loop("unfreeze", f"unfreeze {stages}", model, batches, step, validate)
    history = fit(loop, settings.epochs, settings.patience, lr, console)
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
