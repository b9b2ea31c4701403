"""Training the detector's neck and head on cached pyramids: targets assigned once per image
and view, epochs of pure tensor work, early-stopped on val mAP50-95 (val only chooses)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgetl.core.data.detection import DetectionSet
from edgetl.core.events import say
from edgetl.core.letterbox import Letterbox
from edgetl.core.measures.detection import DetectionScores, Objects, coco_map
from edgetl.core.postprocess import NmsSettings, detections
from edgetl.core.ui import progress
from edgetl.train.detector.model import DetectorHead, locations
from edgetl.train.detector.targets import assign, losses

CLIP_NORM = 10.0  # FCOS's: a few crowded batches early on threw the head off for good


@dataclass(frozen=True)
class DetectorTraining:
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 10  # epochs without a better val mAP50-95 before stopping
    seed: int = 0


@dataclass(frozen=True)
class Examples:
    """Training examples on cached features: rows, and each location's class and box."""

    rows: torch.Tensor  # (N, D), as cached
    labels: torch.Tensor  # (N, L) long; the class count for background
    boxes: torch.Tensor  # (N, L, 4) in input pixels

    @classmethod
    def of(cls, rows: torch.Tensor, part: DetectionSet, letterbox: Letterbox, head: DetectorHead
           ) -> Examples:  # fmt: skip
        centres, strides = locations(head.shape)
        labels, boxes = [], []
        for objects, size in zip(part.objects, part.sizes, strict=True):
            found = assign(
                torch.from_numpy(letterbox.to_input(objects.boxes, size)),
                torch.from_numpy(objects.classes), centres, strides, len(part.classes),
            )  # fmt: skip
            labels.append(found[0])
            boxes.append(found[1])
        return cls(rows, torch.stack(labels), torch.stack(boxes))

    @staticmethod
    def joined(parts: list[Examples]) -> Examples:
        return Examples(
            *(torch.cat([getattr(p, k) for p in parts]) for k in ("rows", "labels", "boxes"))
        )


@dataclass(frozen=True)
class EpochLine:
    epoch: int
    loss: float
    val_map50_95: float
    val_map50: float
    seconds: float
    phase: str = "head"  # "head" on cached pyramids, "unfreeze K" on images


def outputs(
    head: DetectorHead, rows: torch.Tensor, batch: int = 64
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes, scores) an image, in input pixels, from cached rows."""
    head.eval()
    found = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            levels = head.shape.unflatten(rows[start : start + batch].float())
            boxes, scores = head(levels)
            found += list(zip(boxes.numpy(), scores.numpy(), strict=True))
    return found


def scored(
    found: list[tuple[np.ndarray, np.ndarray]],
    part: DetectionSet,
    letterbox: Letterbox,
    settings: NmsSettings,
) -> tuple[DetectionScores, list[Objects]]:
    """mAP of one output an image against `part`'s boxes, in the original pixels."""
    objects = [
        detections(b, s, settings, letterbox, size)
        for (b, s), size in zip(found, part.sizes, strict=True)
    ]
    return coco_map(part.objects, objects, part.sizes, len(part.classes)), objects


def fit(
    head: DetectorHead,
    train: Examples,
    val: tuple[torch.Tensor, DetectionSet],
    letterbox: Letterbox,
    settings: NmsSettings,
    training: DetectorTraining,
) -> list[EpochLine]:
    """Train `head` in place; it ends with the weights of its best val epoch."""
    torch.manual_seed(training.seed)
    steps = -(-len(train.rows) // training.batch_size)

    def epoch(optimizer: torch.optim.Optimizer, schedule: Schedule) -> float:
        return _epoch(head, train, optimizer, schedule, training.batch_size)

    def validate() -> DetectionScores:
        return scored(outputs(head, val[0]), val[1], letterbox, settings)[0]

    groups = [{"params": list(head.parameters()), "lr": training.lr}]
    return run_epochs(head, groups, steps, epoch, validate, training, "detector head")


Schedule = torch.optim.lr_scheduler.LRScheduler


def run_epochs(
    module: torch.nn.Module,
    groups: list[dict[str, Any]],
    steps: int,
    epoch: Callable[[torch.optim.Optimizer, Schedule], float],
    validate: Callable[[], DetectionScores],
    training: DetectorTraining,
    label: str,
    phase: str = "head",
) -> list[EpochLine]:
    """Epochs of `epoch(optimizer, schedule)` (its mean loss; `steps` optimizer steps each) under
    AdamW and one cycle over `groups` (each its own peak lr), early-stopped on val mAP50-95;
    `module` ends with the weights of its best val epoch."""
    optimizer = torch.optim.AdamW(groups, weight_decay=training.weight_decay)
    peaks = [group["lr"] for group in groups]
    total = training.epochs * max(steps, 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=total)
    history: list[EpochLine] = []
    best, best_state, waited = -1.0, copy.deepcopy(module.state_dict()), 0
    with progress() as bar:
        task = bar.add_task(label, total=training.epochs, info="")
        for number in range(1, training.epochs + 1):
            started = time.perf_counter()
            loss = epoch(optimizer, schedule)
            scores = validate()
            history.append(EpochLine(number, loss, scores.map50_95, scores.map50,
                                     time.perf_counter() - started, phase))  # fmt: skip
            bar.update(task, advance=1, info=f"val mAP50-95 {scores.map50_95:.3f}")
            if scores.map50_95 > best:
                best, best_state, waited = scores.map50_95, copy.deepcopy(module.state_dict()), 0
            else:
                waited += 1
                if waited >= training.patience:
                    say(f"early stop after epoch {number}: val mAP50-95 best {best:.3f}")
                    break
    module.load_state_dict(best_state)
    module.eval()
    return history


def _epoch(
    head: DetectorHead,
    train: Examples,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    batch: int,
) -> float:
    # channels_last weights: one epoch of the Lite0 head at 256 px, 160 rows, 2 cores:
    # 2.0-2.3 s -> 1.7-1.8 s (three alternating pairs); a no-op after the first epoch.
    head.to(memory_format=torch.channels_last).train()
    order = torch.randperm(len(train.rows))
    total, count = 0.0, 0
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        if len(index) < 2:  # BatchNorm needs two
            continue
        levels = head.shape.unflatten(train.rows[index].float())
        loss = step(head, levels, train.labels[index], train.boxes[index], optimizer, schedule)
        total += loss * len(index)
        count += len(index)
    return total / max(count, 1)


def step(
    head: DetectorHead,
    levels: list[torch.Tensor],
    labels: torch.Tensor,
    boxes: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
) -> float:
    """One optimizer step on a batch's pyramid levels and targets."""
    return step_outputs(head, head.raw(levels), labels, boxes, optimizer, schedule)


def step_outputs(
    head: DetectorHead,
    outputs: tuple[torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    boxes: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    scale: float = 1.0,
) -> float:
    """One optimizer step on a batch's raw head outputs (logits, distances) and targets
    (focal + GIoU, gradients clipped over everything the optimizer trains); the batch's loss.
    `scale` multiplies the loss that is back-propagated (a rank's share under DDP)."""
    logits, raw = outputs
    decoded, _ = head.decode(logits, raw)
    focal, giou = losses(logits, decoded, labels, boxes)
    loss = focal + giou
    optimizer.zero_grad(set_to_none=True)
    (loss if scale == 1.0 else loss * scale).backward()
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(trained, CLIP_NORM)
    optimizer.step()
    schedule.step()
    return float(loss.detach())
