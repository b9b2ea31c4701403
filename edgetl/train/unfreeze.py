"""Fine-tuning the last backbone stages with the head: the same loop as the head's (loop.py),
with mixed precision on CUDA and images instead of cached features; under torchrun, with
DistributedDataParallel (each rank a share of every batch)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from edgetl.core.data.imageset import ImageSet
from edgetl.core.preprocess import Preprocess
from edgetl.train.backbones import trainable_tail
from edgetl.train.distributed import Group
from edgetl.train.loop import EpochRow, HeadTraining, Loop, Step, correct, fit
from edgetl.train.model import Classifier

IGNORED = -100  # CrossEntropyLoss's ignore_index: a label that adds no loss and no gradient


def train_unfrozen(
    model: Classifier,
    train: ImageSet,
    val: ImageSet,
    pre: Preprocess,
    stages: int,
    settings: HeadTraining,
    device: torch.device,
    group: Group | None = None,
    phase: str = "unfreeze",
) -> list[EpochRow]:
    """Fine-tune the last K backbone stages with the head (warm-started on features).

    BatchNorm statistics stay frozen (eval mode): small datasets make them worse, not better.
    Under torchrun every rank calls this; DDP broadcasts rank 0's weights (its trained head)
    when it wraps the model, and every rank ends with the same weights and history.
    """
    optimizer = _optimizer(model, stages, settings.lr)
    model.to(device).eval()
    trained = _data_parallel(model, device) if group is not None else model
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    rng = np.random.default_rng(settings.seed)
    whole = [settings.batch_size]  # the size of the batch whose share step() is given

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The same seeded order on every rank; each takes every world-th image of a batch.
        shuffled = train.subset(rng.permutation(len(train)))
        for start in range(0, len(shuffled), settings.batch_size):
            whole[0] = min(settings.batch_size, len(shuffled) - start)
            share = list(range(start, start + whole[0]))[rank::world]
            # An empty share (a last batch smaller than the world) runs the batch's first
            # image labelled IGNORED: every rank must run backward for DDP's all-reduce.
            images, labels = next(shuffled.subset(share or [start]).batches(pre, whole[0]))
            x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
            yield x, (y if share else torch.full_like(y, IGNORED))

    step = _step(trained, optimizer, device, lambda: world / whole[0])

    def validate() -> tuple[float, float]:
        return _validate(model, val, pre, settings.batch_size, device, group)

    def over_ranks(values: list[float]) -> list[float]:
        return _over_ranks(values, group)

    loop = Loop(phase, f"unfreeze {stages}", model, batches, step, validate, over_ranks)
    history = fit(loop, settings.epochs, settings.patience, settings.lr)
    model.cpu().eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return history


def _step(
    trained: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scale: Callable[[], float],
) -> Step:
    """One step on a rank's share of a batch, mixed precision on CUDA. DDP averages
    gradients over ranks: scaling each rank's summed loss by `scale()` (world / batch size)
    makes that average the gradient of the whole batch's mean loss, as in one process."""
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum", ignore_index=IGNORED)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device.type, enabled=use_amp):
            logits = trained(x)
            summed = loss_fn(logits.float(), y)
        optimizer.zero_grad()
        scaler.scale(summed * scale()).backward()
        scaler.step(optimizer)
        scaler.update()
        return logits, summed.detach() / max(int((y >= 0).sum()), 1)

    return step


def _optimizer(model: Classifier, stages: int, lr: float) -> torch.optim.Optimizer:
    """Only the last `stages` of the backbone trainable (at a tenth of the head's rate)."""
    for param in model.backbone.parameters():
        param.requires_grad_(False)
    tail = trainable_tail(model.backbone, stages)
    for param in tail:
        param.requires_grad_(True)
    return torch.optim.AdamW(
        [{"params": tail, "lr": lr * 0.1}, {"params": model.head.parameters(), "lr": lr}],
        weight_decay=1e-2,
    )


def _validate(
    model: Classifier,
    val: ImageSet,
    pre: Preprocess,
    batch_size: int,
    device: torch.device,
    group: Group | None,
) -> tuple[float, float]:
    """(mean loss, top-1) on val, each rank measuring its share; summed over ranks, so every
    rank gets the same figures and takes the same early-stopping decision."""
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    share = val.subset(range(rank, len(val), world))
    logits, labels = predict(model, share, pre, batch_size, device)
    loss = nn.functional.cross_entropy(logits, labels, reduction="sum").item()
    loss, right = _over_ranks([loss, float(correct(logits, labels))], group)
    return loss / len(val), right / len(val)


def _over_ranks(values: list[float], group: Group | None) -> list[float]:
    if group is None:
        return values
    totals = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(totals)
    return totals.tolist()


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def predict(
    model: nn.Module, images: ImageSet, pre: Preprocess, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    outputs = []
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for batch, _ in images.batches(pre, batch_size):
            outputs.append(model(torch.from_numpy(batch).to(device)).float().cpu())
    if not outputs:  # a rank's share of a val set smaller than the world
        return torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)
    return torch.cat(outputs), torch.from_numpy(images.labels)
