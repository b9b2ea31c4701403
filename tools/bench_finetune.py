"""Feature cache vs a plain frozen-backbone loop: time to train a head for the same epochs.

Both sides train the same head with the same optimizer on the same data in one process and
score the validation split after every epoch: the plain loop runs the frozen backbone over
every batch of every epoch (what most transfer-learning scripts do), edgetl runs it once,
caches the features, and trains on them. Times are whole wall-clock times, data and
backbone loading included on both sides.

    python tools/bench_finetune.py [--data digits] [--epochs 10] [--image-size 128]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetl.core.data.dataset import load_dataset
from edgetl.stages.finetune import FinetuneOptions, finetune
from edgetl.train.backbones import load_backbone
from edgetl.train.model import Head


def plain_loop(
    data: str, epochs: int, image_size: int, batch_size: int, seed: int
) -> tuple[float, float]:
    """Seconds and val top-1 of a head trained by running the frozen backbone on every batch.

    Like edgetl it scores the validation split after every epoch (early stopping needs it).
    """
    started = time.perf_counter()
    splits = load_dataset(data, 0.2, seed)
    backbone = load_backbone("efficientnet_lite0", image_size=image_size)
    # The same channels_last speed-up as edgetl's extraction, so only the caching differs.
    model = backbone.model.eval().to(memory_format=torch.channels_last)
    pre = backbone.preprocess

    def features(images: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            x = torch.from_numpy(images).contiguous(memory_format=torch.channels_last)
            return model(x).clone()

    head = Head(backbone.num_features, len(splits.classes))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    steps = epochs * math.ceil(len(splits.train) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    rng = np.random.default_rng(seed)
    top1 = 0.0
    for _ in range(epochs):
        head.train()
        shuffled = splits.train.subset(rng.permutation(len(splits.train)))
        for images, labels in shuffled.batches(pre, batch_size):
            loss = loss_fn(head(features(images)), torch.from_numpy(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        head.eval()
        correct = 0
        for images, labels in splits.val.batches(pre, batch_size):
            with torch.inference_mode():
                correct += int((head(features(images)).argmax(1) == torch.from_numpy(labels)).sum())
        top1 = correct / len(splits.val)
    return time.perf_counter() - started, top1


def cached(
    data: str, epochs: int, image_size: int, batch_size: int, seed: int, cache: Path
) -> tuple[float, dict]:
    out = Path(tempfile.mkdtemp()) / "run"
    started = time.perf_counter()
    meta = finetune(
        FinetuneOptions(
            data=data,
            out=out,
            epochs=epochs,
            image_size=image_size,
            batch_size=batch_size,
            seed=seed,
            patience=epochs + 1,
            cache_dir=cache,
            device="cpu",
        )
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(out.parent)
    return elapsed, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    cache = Path(tempfile.mkdtemp(prefix="edgetl-bench-cache-"))
    try:
        # The plain loop goes first, so it is the one that pays the process's warm-up.
        plain_s, plain_top1 = plain_loop(
            args.data, args.epochs, args.image_size, args.batch_size, args.seed
        )
        cold_s, cold = cached(
            args.data, args.epochs, args.image_size, args.batch_size, args.seed, cache
        )
        warm_s, warm = cached(
            args.data, args.epochs, args.image_size, args.batch_size, args.seed, cache
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    one_pass = cold["metrics"]["feature_s"]
    threads = torch.get_num_threads()
    print(f"data={args.data} epochs={args.epochs} image_size={args.image_size} threads={threads}")
    print(f"{'method':<34}{'seconds':>9}{'val top-1':>11}")
    print(f"{'plain loop (backbone every epoch)':<34}{plain_s:>9.1f}{plain_top1:>11.2%}")
    print(f"{'edgetl, cold cache':<34}{cold_s:>9.1f}{cold['metrics']['val_top1']:>11.2%}")
    print(f"{'edgetl, warm cache':<34}{warm_s:>9.1f}{warm['metrics']['val_top1']:>11.2%}")
    print(f"one backbone pass over the data: {one_pass:.1f} s")
    print(f"speed-up, cold cache vs plain: {plain_s / cold_s:.1f}x")
    print(f"speed-up, warm cache vs plain: {plain_s / warm_s:.1f}x")
    print(f"cold-cache time / one backbone pass: {cold_s / one_pass:.2f}")


if __name__ == "__main__":
    main()
