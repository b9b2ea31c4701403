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

import torch
from rich.console import Console
from torch import nn

from edgetl.core.constants import DEFAULT_BACKBONE
from edgetl.core.data.dataset import BUILTIN_DATASETS, load_dataset
from edgetl.core.data.splits import Splits
from edgetl.core.data.splitting import check_fractions
from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_text, sha256_file, staged_dir
from edgetl.core.outputs import check_not_input, check_writable, claim
from edgetl.core.records import RUN_FILE, DataInfo, HeadInfo, RunInfo, TrainInfo
from edgetl.core.ui import make_console, table
from edgetl.core.versions import versions
from edgetl.train.backbones import Backbone, load_backbone, stage_count
from edgetl.train.depth import DepthTrial, against_scratch, choose_depth, in_words
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
from edgetl.train.model import BACKBONE_WEIGHTS, HEAD_WEIGHTS, HISTORY_FILE, Classifier, Head
from edgetl.train.scratch import scratch_baseline
from edgetl.train.unfreeze import predict, train_unfrozen

AUTO = "auto"  # --unfreeze auto
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
    unfreeze: int | str = 0  # K stages, or "auto" (train/depth.py)
    unfreeze_tolerance: float = 0.5  # --unfreeze auto: points of val top-1 a smaller K may lose
    scratch_baseline: bool = False  # also train a small CNN from scratch (train/scratch.py)
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


def finetune(
    opts: FinetuneOptions, console: Console, splits: Splits | None = None
) -> RunInfo | None:
    """Run the whole stage and write the run directory; returns the run's metadata.

    `splits`: the data already scanned (`load_dataset(opts.data, ...)`, the search's), so it
    is not scanned again. Under torchrun, every rank extracts its share of the features;
    rank 0 then trains the head and writes the run (the other ranks return None)."""
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
        return _finetune_here(opts, console, group, splits)
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
    if not opts.unfreeze:
        return
    # The head's weights come from rank 0 when DDP wraps the model; with auto, every depth
    # in turn, as rank 0 runs them (DDP's wrap brings rank 0's weights each time).
    head = Head(backbone.num_features, len(splits.classes), opts.hidden)
    model = Classifier(backbone.model, head)
    depths = auto_depths(model.backbone) if opts.unfreeze == AUTO else [int(opts.unfreeze)]
    for stages in depths:
        phase = "unfreeze" if opts.unfreeze != AUTO else f"unfreeze {stages}"
        train_unfrozen(model, splits.train, splits.val, backbone.preprocess, stages,
                       opts.head_training(), device, quiet, group, phase)  # fmt: skip


def _cache_dir(opts: FinetuneOptions) -> Path | None:
    return (opts.cache_dir or default_cache_dir()) if opts.use_cache else None


def _finetune_here(
    opts: FinetuneOptions, console: Console, group: Group | None, splits: Splits | None
) -> RunInfo:
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
        return _finetune(opts, cache_dir, console, group, splits)


def _finetune(
    opts: FinetuneOptions,
    cache_dir: Path | None,
    console: Console,
    group: Group | None,
    splits: Splits | None,
) -> RunInfo:
    device = resolve_device(opts.device)
    if group is not None:
        device = group.device(device)
    torch.manual_seed(opts.seed)
    started = time.perf_counter()

    splits = _splits(opts, splits)
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

    trained = _train(opts, splits, backbone, feats, device, console, group)
    head, history = trained.head, trained.history
    kept_phase = [row for row in history if row["phase"] == trained.phase]
    best = min(kept_phase, key=lambda row: row["val_loss"])
    _, test_top1 = evaluate_logits(trained.test_logits, torch.from_numpy(splits.test.labels))
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
    if trained.depths is not None:
        metrics["unfreeze_auto"] = trained.depths
    if opts.scratch_baseline:
        metrics["scratch_baseline"] = _scratch(opts, splits, backbone, history, console)
    info = _run_info(opts, splits, backbone, device, metrics, trained.stages)
    check_weights(head, "the head")
    check_weights(backbone.model, "the backbone")
    kept = write_run(opts.out, backbone.model, head, info, history, opts.force)
    if kept:
        stale = " (artifacts of the replaced run: export again to update them)"
        console.print(
            f"kept from the replaced run: {', '.join(kept)}" + (stale if "export" in kept else "")
        )
    return info


def _splits(opts: FinetuneOptions, given: Splits | None) -> Splits:
    """`given` when it is this run's data with its terms; else the data scanned now."""
    terms = (opts.val_fraction, opts.test_fraction, opts.seed)
    if given is None:
        return load_dataset(opts.data, *terms)
    if not given.matches(opts.data, *terms):
        raise ValueError(f"the splits given are not those of --data {opts.data} with {terms}")
    return given


@dataclass
class Trained:
    """What training kept: the head (inside the backbone's model when unfrozen), every
    epoch's history, the kept model's test logits, the history phase it was kept from, and
    with --unfreeze auto what each depth scored."""

    head: Head
    history: list[dict[str, Any]]
    test_logits: torch.Tensor
    phase: str
    stages: int
    depths: dict[str, Any] | None = None


def _train(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    feats: dict[str, torch.Tensor],
    device: torch.device,
    console: Console,
    group: Group | None,
) -> Trained:
    """The head on cached features, then (--unfreeze K or auto) the last stages with it."""
    # Seeded here, not by whatever drew random numbers before (loading the backbone, the
    # cache's row-precision check): the same head as `edgetl search` trains for this
    # configuration, so the FP32 val it prunes INT8 candidates by is this run's.
    torch.manual_seed(opts.seed)
    head = Head(backbone.num_features, len(splits.classes), opts.hidden)
    head.set_feature_stats(feats["train"])
    train_y = torch.from_numpy(splits.train.labels)
    val_y = torch.from_numpy(splits.val.labels)
    settings = opts.head_training()
    started = time.perf_counter()
    history = train_head(head, feats["train"], train_y, feats["val"], val_y, settings, console)
    if not opts.unfreeze:
        return Trained(head, history, eval_logits(head, feats["test"]), "head", 0)
    model = Classifier(backbone.model, head)
    pre = backbone.preprocess
    if opts.unfreeze == AUTO:
        probe = DepthTrial(0, *_kept(history, "head"), time.perf_counter() - started)
        kept, depths = _unfreeze_auto(opts, model, splits, pre, device, console, group, probe,
                                      history)  # fmt: skip
        phase = "head" if kept == 0 else f"unfreeze {kept}"
    else:
        kept, depths, phase = int(opts.unfreeze), None, "unfreeze"
        history += train_unfrozen(
            model, splits.train, splits.val, pre, kept, settings, device, console, group
        )
    # train_unfrozen hands the model back on the CPU
    test_logits, _ = predict(model, splits.test, pre, opts.batch_size, torch.device("cpu"))
    return Trained(head, history, test_logits, phase, kept, depths)


def _scratch(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    history: list[dict[str, Any]],
    console: Console,
) -> dict[str, Any]:
    """The small CNN from scratch on the same split and input size, against the probe."""
    found: dict[str, Any] = dict(
        scratch_baseline(splits.train, splits.val, len(splits.classes), backbone.preprocess,
                         opts.head_training(), console)
    )  # fmt: skip
    probe_val, _ = _kept(history, "head")
    found["probe_val_top1"] = probe_val
    found["finding"] = against_scratch(probe_val, found["val_top1"])
    console.print(found["finding"])
    return found


def _kept(history: list[dict[str, Any]], phase: str) -> tuple[float, float]:
    """(val top-1, val loss) of the epoch early stopping kept in `phase`."""
    best = min((row for row in history if row["phase"] == phase), key=lambda r: r["val_loss"])
    return best["val_top1"], best["val_loss"]


def _unfreeze_auto(
    opts: FinetuneOptions,
    model: Classifier,
    splits: Splits,
    pre: Any,
    device: torch.device,
    console: Console,
    group: Group | None,
    probe: DepthTrial,
    history: list[dict[str, Any]],
) -> tuple[int, dict[str, Any]]:
    """K = 1, 2 (as the backbone has stages), each warm-started from the one before and
    scored on val; the model is left with the chosen K's weights. Appends to `history`."""
    trials, states = [probe], {0: copy.deepcopy(model.state_dict())}
    for stages in auto_depths(model.backbone):
        started = time.perf_counter()
        phase = f"unfreeze {stages}"
        history += train_unfrozen(model, splits.train, splits.val, pre, stages,
                                  opts.head_training(), device, console, group, phase)  # fmt: skip
        trials.append(DepthTrial(stages, *_kept(history, phase), time.perf_counter() - started))
        states[stages] = copy.deepcopy(model.state_dict())
    chosen = choose_depth(trials, opts.unfreeze_tolerance)
    model.load_state_dict(states[chosen.stages])
    finding = in_words(trials, chosen, opts.unfreeze_tolerance)
    console.print(
        table(
            f"--unfreeze auto: each depth on val (tolerance {opts.unfreeze_tolerance:g} pt)",
            ["stages trained", "val top-1", "val loss", "seconds", ""],
            [
                [
                    t.stages,
                    f"{t.val_top1:.2%}",
                    f"{t.val_loss:.4f}",
                    f"{t.seconds:.1f}",
                    "kept" if t is chosen else "",
                ]
                for t in trials
            ],
        )  # fmt: skip
    )
    console.print(finding)
    depths = {"tolerance_pt": opts.unfreeze_tolerance, "chosen": chosen.stages,
              "finding": finding, "trials": [t.to_dict() for t in trials]}  # fmt: skip
    return chosen.stages, depths


def auto_depths(backbone: nn.Module) -> list[int]:
    """The depths --unfreeze auto tries beyond the probe: 1 and 2 stages, as there are."""
    return [k for k in (1, 2) if k < stage_count(backbone)]


def _run_info(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    device: torch.device,
    metrics: dict[str, Any],
    stages: int,
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
            unfreeze=stages,
        ),
        metrics=metrics,
        versions=versions(),
        command=list(sys.argv),
        weights={},  # write_run sets the sha256 of the files it writes
    )


def _check_options(opts: FinetuneOptions) -> None:
    check_fractions(opts.val_fraction, opts.test_fraction)
    if opts.unfreeze != AUTO and not isinstance(opts.unfreeze, int):
        raise EdgetlError(f"--unfreeze {opts.unfreeze}: give a number of stages or auto")
    if not 0 <= opts.unfreeze_tolerance < 100:
        raise EdgetlError(
            f"--unfreeze-tolerance {opts.unfreeze_tolerance}: give points of top-1, e.g. 0.5"
        )
    for option, value, least in (
        ("--epochs", opts.epochs, 1),
        ("--batch-size", opts.batch_size, 1),
        ("--patience", opts.patience, 1),
        ("--hidden", opts.hidden, 0),
        ("--unfreeze", 0 if opts.unfreeze == AUTO else int(opts.unfreeze), 0),
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
) -> list[str]:
    """The run written whole (staged, then moved into place); what a replaced run held
    beside the run's own files is kept: returns those names."""
    from safetensors.torch import save_file

    kept: list[str] = []
    own = (RUN_FILE, BACKBONE_WEIGHTS, HEAD_WEIGHTS, HISTORY_FILE)
    with staged_dir(out, force, "run", RUN_FILE, own=own, kept=kept) as tmp:
        save_file(
            {k: v.contiguous() for k, v in backbone.state_dict().items()},
            str(tmp / BACKBONE_WEIGHTS),
        )
        save_file(head.state_dict(), str(tmp / HEAD_WEIGHTS))
        atomic_write_text(tmp / HISTORY_FILE, history_csv(history))
        info.weights = {name: sha256_file(tmp / name) for name in (BACKBONE_WEIGHTS, HEAD_WEIGHTS)}
        info.write(tmp)
    return kept


def history_csv(history: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()
