"""--scratch-baseline: a small CNN trained from scratch on the same split, the yardstick for
the frozen features. Far above the linear probe, it says the pretrained features do not fit
the data (a domain gap, or negative transfer): the seeds' warning made measurable."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from edgetl.core.data.imageset import ImageSet
from edgetl.core.preprocess import Preprocess
from edgetl.train.loop import HeadTraining, Loop, evaluate_logits, fit, kept_row, plain_step
from edgetl.train.unfreeze import predict

WIDTHS = (16, 32, 64, 128)  # four conv blocks, stride 2 each: ~0.1 M parameters
SCRATCH_WEIGHTS = "scratch.safetensors"  # the run keeps it: bench --robustness's yardstick


def small_cnn(classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    channels = 3
    for width in WIDTHS:
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]  # fmt: skip
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def scratch_baseline(
    train: ImageSet,
    val: ImageSet,
    classes: int,
    pre: Preprocess,
    settings: HeadTraining,
) -> tuple[dict[str, float], nn.Module]:
    """Train the small CNN (all layers, BatchNorm learning) with early stopping on val;
    its val top-1 at the kept epoch, parameters and seconds, and the model as kept."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    model = small_cnn(classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    rng = np.random.default_rng(settings.seed)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        model.train()
        for images, labels in train.subset(rng.permutation(len(train))).batches(
            pre, settings.batch_size
        ):
            yield torch.from_numpy(images), torch.from_numpy(labels)

    step = plain_step(model, loss_fn, optimizer)

    def validate() -> tuple[float, float]:
        logits, labels = predict(model, val, pre, settings.batch_size, torch.device("cpu"))
        return evaluate_logits(logits, labels)

    loop = Loop("scratch", "scratch baseline", model, batches, step, validate)
    history = fit(loop, settings.epochs, settings.patience, 3e-3)
    best = kept_row(history, "scratch")
    found = {
        "val_top1": best.val_top1,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return found, model.eval()
