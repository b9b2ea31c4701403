"""What `finetune` is asked, declared once (core/options.py): the command-line options, their
defaults and help, and their checks. Imports nothing heavy: the command line reads it before
PyTorch loads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.core.constants import DEFAULT_BACKBONE
from edgetl.core.data.splitting import check_fractions
from edgetl.core.errors import EdgetlError
from edgetl.core.options import option

if TYPE_CHECKING:
    from edgetl.train.loop import HeadTraining

AUTO = "auto"  # --unfreeze auto
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024  # below 16 px a backbone's strides leave no pixels


def depth(text: str) -> int | str:
    """--unfreeze: a number of stages, or auto."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise ValueError("give a number of stages (0, 1, 2, ...) or auto") from None


@dataclass
class FinetuneOptions:
    data: str = option(
        help="ImageFolder directory, 'digits', or a detection set (YOLO or COCO layout)."
    )
    out: Path = option(help="Run directory.")
    task: str = option(
        "auto",
        "classify or detect; auto reads it from --data's layout (data.yaml: YOLO, "
        "annotations/instances_*.json: COCO).",
        choices=("auto", "classify", "detect"),
    )
    backbone: str = option(DEFAULT_BACKBONE, "Registry or timm model name.")
    weights: Path | None = option(
        None, "Local backbone checkpoint (.safetensors or state-dict .pth)."
    )
    epochs: int = option(30)
    lr: float = option(1e-3)
    batch_size: int = option(64)
    image_size: int | None = option(
        None, "Input size; default from the backbone's pretrained config."
    )
    device: str = option("auto", choices=("auto", "cpu", "cuda"))
    unfreeze: int | str = option(
        0,
        "Also train the last K backbone stages (head warm-started on cached features), or "
        "auto: the probe, then 1, then 2 stages, each scored on val; the smallest K within "
        "--unfreeze-tolerance of the best is kept.",
        parse=depth,
        metavar="K|auto",
    )
    scratch_baseline: bool = option(
        False,
        "Also train a small CNN from scratch on the same split (train/scratch.py): far above "
        "the linear probe on val, it is reported as a domain gap / negative transfer.",
    )
    unfreeze_tolerance: float = option(
        0.5, "With --unfreeze auto: val top-1 points a smaller K may be below the best."
    )
    hidden: int = option(0, "Hidden units of an MLP head; 0 for a linear head.")
    val_fraction: float = option(
        0.2,
        "Share of each class held out for val (choices: early stopping, INT8 guard) when "
        "DATA has no val/ folder.",
    )
    test_fraction: float = option(
        0.2,
        "Share of each class held out for test (reported only) when DATA has no test/ folder.",
    )
    patience: int = option(5, "Early stopping: epochs without val-loss gain.")
    seed: int = option(0)
    cache_dir: Path | None = option(
        None, "Feature cache directory [default: ~/.cache/edgetl/features]."
    )
    no_cache: bool = option(False, "Do not read or write the feature cache.")
    workers: int | None = option(
        None,
        "Threads decoding images ahead of feature extraction; 0 decodes in line "
        "[default: the cores available].",
    )
    force: bool = option(False, "Replace an existing run directory.")

    @property
    def use_cache(self) -> bool:
        return not self.no_cache

    def head_training(self) -> HeadTraining:
        from edgetl.train.loop import HeadTraining

        return HeadTraining(self.epochs, self.lr, self.batch_size, self.seed, self.patience)


def check_options(opts: FinetuneOptions) -> None:
    check_fractions(opts.val_fraction, opts.test_fraction)
    if opts.unfreeze != AUTO and not isinstance(opts.unfreeze, int):
        raise EdgetlError(f"--unfreeze {opts.unfreeze}: give a number of stages or auto")
    if not 0 <= opts.unfreeze_tolerance < 100:
        raise EdgetlError(
            f"--unfreeze-tolerance {opts.unfreeze_tolerance}: give points of top-1, e.g. 0.5"
        )
    for flag, value, least in (
        ("--epochs", opts.epochs, 1),
        ("--batch-size", opts.batch_size, 1),
        ("--patience", opts.patience, 1),
        ("--hidden", opts.hidden, 0),
        ("--unfreeze", 0 if opts.unfreeze == AUTO else int(opts.unfreeze), 0),
        ("--workers", 0 if opts.workers is None else opts.workers, 0),
    ):
        if value < least:
            raise EdgetlError(f"{flag} {value}: must be at least {least}")
    if opts.image_size is not None and not MIN_IMAGE_SIZE <= opts.image_size <= MAX_IMAGE_SIZE:
        raise EdgetlError(
            f"--image-size {opts.image_size}: give {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} pixels, or "
            "leave it out for the backbone's own size"
        )
    if not (math.isfinite(opts.lr) and opts.lr > 0):
        raise EdgetlError(f"--lr {opts.lr}: must be a positive finite number, e.g. 1e-3")
