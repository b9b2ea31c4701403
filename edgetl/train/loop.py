"""Head training on features: the primitive both finetune and the INT8 guard's head refit call."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgetl.core.errors import CheckFailed
from edgetl.core.events import say
from edgetl.core.measures.metrics import predicted
from edgetl.core.ui import progress


@dataclass(frozen=True)
class HeadTraining:
    """Optimizer settings; the run records them so the guard can re-fit the same way."""

    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    patience: int = 5


class EarlyStopping:
    """Keep the weights of the best val-loss epoch; stop after `patience` epochs without gain."""

    def __init__(self, patience: int, min_delta: float = 1e-4):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.stale, self.best_epoch = math.inf, 0, 0
        self.best_state: dict[str, Any] | None = None

    def should_stop(self, val_loss: float, module: nn.Module, epoch: int) -> bool:
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.stale, self.best_epoch = val_loss, 0, epoch
            self.best_state = copy.deepcopy(module.state_dict())
            return False
        self.stale += 1
        if self.stale < self.patience:
            return False
        say(f"early stop at epoch {epoch}: no val-loss gain in {self.stale} epochs")
        return True

    def restore(self, module: nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)

    def kept(self, history: list[EpochRow]) -> str:
        """The epoch whose weights are kept, in words: what the progress bar ends on (it
        ended on the last epoch while the run's table reported the best one)."""
        rows = [row for row in history if row.epoch == self.best_epoch]
        if not rows:
            return ""
        row = rows[-1]
        return f"kept epoch {row.epoch}: val loss {row.val_loss:.3f} top-1 {row.val_top1:.1%}"


Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def plain_step(
    module: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any = None
) -> Step:
    """One optimizer step on a batch (and the schedule's, when given): (logits, loss)."""

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = module(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        return logits, loss

    return step


def train_head(
    head: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    settings: HeadTraining,
) -> list[EpochRow]:
    """Mini-batch AdamW on features, cosine schedule, early stopping on val loss."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=1e-2)
    steps = settings.epochs * math.ceil(len(train_x) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        head.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            yield train_x[idx], train_y[idx]

    step = plain_step(head, loss_fn, optimizer, schedule)

    def validate() -> tuple[float, float]:
        return evaluate_logits(eval_logits(head, val_x), val_y)

    loop = Loop("head", "train head", head, batches, step, validate)
    history = fit(loop, settings.epochs, settings.patience, settings.lr)
    head.eval()
    return history


Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]
Totals = Callable[[list[float]], list[float]]


def local(totals: list[float]) -> list[float]:
    return totals


@dataclass(frozen=True)
class Loop:
    """One training phase: what one epoch iterates, what one step does, how val is scored.

    `module` is what early stopping keeps the best weights of; `batches()` is called once
    per epoch (it shuffles); `step(x, y)` does forward, backward and the optimizer and returns
    (logits, mean loss over the labels >= 0); `validate()` gives (val loss, val top-1);
    `totals` sums an epoch's [loss sum, correct, count] over torchrun ranks (DDP)."""

    phase: str  # the history's `phase` column
    title: str  # the progress bar's
    module: nn.Module
    batches: Batches
    step: Step
    validate: Callable[[], tuple[float, float]]
    totals: Totals = local


def fit(loop: Loop, epochs: int, patience: int, lr: float) -> list[EpochRow]:
    """The one training loop (head on features, and the unfrozen backbone): epochs with a
    progress bar, a non-finite loss as a failed run, early stopping on val loss with the best
    epoch's weights restored. Returns a history row per epoch."""
    history: list[EpochRow] = []
    stopper = EarlyStopping(patience)
    with progress() as bar:
        task = bar.add_task(loop.title, total=epochs, info="")
        for epoch in range(1, epochs + 1):
            sums = [0.0, 0.0, 0.0]  # loss, correct, count
            for x, y in loop.batches():
                logits, loss = loop.step(x, y)
                counted = int((y >= 0).sum())  # a negative label is DDP padding
                sums[0] += loss.item() * counted
                sums[1] += correct(logits, y)
                sums[2] += counted
            loss_sum, right, total = loop.totals(sums)
            val_loss, val_top1 = loop.validate()
            check_finite(loss_sum / total, val_loss, epoch, lr)
            history.append(
                epoch_row(loop.phase, epoch, loss_sum / total, right / total, val_loss, val_top1)
            )
            bar.update(task, advance=1, info=f"val loss {val_loss:.3f} top-1 {val_top1:.1%}")
            if stopper.should_stop(val_loss, loop.module, epoch):
                break
        bar.update(task, info=stopper.kept(history))
    stopper.restore(loop.module)
    return history


def check_finite(train_loss: float, val_loss: float, epoch: int, lr: float) -> None:
    """A NaN or infinite loss is a failed run (exit 1), never a saved one."""
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        raise CheckFailed(
            f"training diverged at epoch {epoch}: train loss {train_loss}, val loss {val_loss}; "
            f"lower --lr (now {lr:g}). Nothing was written"
        )


def check_weights(module: nn.Module, what: str) -> None:
    """Every parameter and buffer finite before anything is saved."""
    bad = [name for name, t in module.state_dict().items() if not torch.isfinite(t).all()]
    if bad:
        raise CheckFailed(
            f"{what} has non-finite weights ({', '.join(bad[:3])}); lower --lr. Nothing was written"
        )


def eval_logits(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    module.eval()
    with torch.inference_mode():
        return module(inputs)


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits.float(), labels).item()
    # A count over a count, in float64: a float32 mean (36/38 -> 0.94736844) would break a
    # tie with the same fraction computed elsewhere (the export's 0.9473684210526315).
    return loss, correct(logits, labels) / max(len(labels), 1)


@dataclass(frozen=True)
class EpochRow:
    """One epoch of a run's history (history.csv's columns, in order)."""

    phase: str  # head, unfreeze, unfreeze K
    epoch: int
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float


def epoch_row(
    phase: str, epoch: int, train_loss: float, train_top1: float, val_loss: float, val_top1: float
) -> EpochRow:
    rounded = (round(v, 5) for v in (train_loss, train_top1, val_loss, val_top1))
    return EpochRow(phase, epoch, *rounded)


def kept_row(history: list[EpochRow], phase: str) -> EpochRow:
    """The epoch early stopping kept in `phase`: the lowest val loss (the first of ties)."""
    return min((row for row in history if row.phase == phase), key=lambda row: row.val_loss)


def correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """How many rows' top-1 is their label, by core/measures/metrics.predicted (the one top-1:
    the first of tied maxima), for logits on any device."""
    answers = predicted(logits.detach().float().cpu().numpy())
    return int((answers == labels.cpu().numpy()).sum())
