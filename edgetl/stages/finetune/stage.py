"""The stage: the data scanned (or handed in), the features extracted through the cache (on
every torchrun rank), the head trained (training.py), the run written whole (writing.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from edgetl.core.data.dataset import BUILTIN_DATASETS, load_dataset
from edgetl.core.data.splits import Splits
from edgetl.core.errors import EdgetlError
from edgetl.core.events import quiet, say
from edgetl.core.outputs import check_not_input, check_writable, claim
from edgetl.core.records import RUN_FILE, RunInfo, RunMetrics
from edgetl.stages.finetune.options import AUTO, FinetuneOptions, check_options
from edgetl.stages.finetune.training import Trained, auto_depths, scratch, train
from edgetl.stages.finetune.writing import run_info, write_run
from edgetl.train.backbones import Backbone, load_backbone
from edgetl.train.devices import resolve_device
from edgetl.train.distributed import Group, join, leave
from edgetl.train.extract import default_workers
from edgetl.train.features import cached_features, default_cache_dir, row_precision
from edgetl.train.loop import check_weights, evaluate_logits, kept_row
from edgetl.train.model import Classifier, Head
from edgetl.train.unfreeze import train_unfrozen


def wants_detection(opts: FinetuneOptions) -> bool:
    """--task detect, or auto on a YOLO or COCO folder."""
    if opts.task != "auto":
        return opts.task == "detect"
    from edgetl.core.data.detection import layout

    return opts.data not in BUILTIN_DATASETS and layout(Path(opts.data)) is not None


def finetune(opts: FinetuneOptions, splits: Splits | None = None) -> RunInfo | None:
    """Run the whole stage and write the run directory; returns the run's metadata.

    `splits`: the data already scanned (`load_dataset(opts.data, ...)`, the search's), so it
    is not scanned again. Under torchrun, every rank extracts its share of the features;
    rank 0 then trains the head and writes the run (the other ranks return None). Progress
    and messages go to the reporter of the context (core/events)."""
    check_options(opts)
    detect = wants_detection(opts)
    group = join()
    if group is not None and not opts.use_cache:
        raise EdgetlError(
            "--no-cache with several ranks: the ranks hand their features to rank 0 through "
            "the feature cache; drop --no-cache (or give --cache-dir)"
        )
    try:
        if detect:
            from edgetl.stages.detect.training import finetune_detector

            found: Any = finetune_detector(opts, group)
        elif group is not None and not group.leader:
            with quiet():  # rank 0 speaks for the run
                _extract_share(opts, group)
            found = None
        else:
            found = _finetune_here(opts, group, splits)
    except BaseException:
        # No barrier: the other ranks would wait there for this one forever; they fail on
        # their next collective instead, and this rank's error is what the launch shows.
        leave(group, failed=True)
        raise
    leave(group)
    return found


def _extract_share(opts: FinetuneOptions, group: Group) -> None:
    """A rank other than 0: its share of the images missing from the cache, then (with
    --unfreeze) its share of every batch of the fine-tuning, then done."""
    device = group.device(resolve_device(opts.device))
    torch.manual_seed(opts.seed)
    splits = load_dataset(opts.data, opts.val_fraction, opts.test_fraction, opts.seed)
    backbone = load_backbone(opts.backbone, opts.weights, opts.image_size)
    workers = default_workers() if opts.workers is None else opts.workers
    cached_features(backbone, splits, device, opts.batch_size, workers, _cache_dir(opts), group)
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
                       opts.head_training(), device, group, phase)  # fmt: skip


def _cache_dir(opts: FinetuneOptions) -> Path | None:
    return (opts.cache_dir or default_cache_dir()) if opts.use_cache else None


def _finetune_here(opts: FinetuneOptions, group: Group | None, splits: Splits | None) -> RunInfo:
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
            say(note)
        return _finetune(opts, cache_dir, group, splits)


def _finetune(
    opts: FinetuneOptions,
    cache_dir: Path | None,
    group: Group | None,
    splits: Splits | None,
) -> RunInfo:
    device = resolve_device(opts.device)
    if group is not None:
        device = group.device(device)
    torch.manual_seed(opts.seed)
    started = time.perf_counter()

    splits = _splits(opts, splits)
    say(
        f"data: {splits.source}: {len(splits.classes)} classes, {splits.sizes()} "
        f"({splits.strategy}); val chooses (early stopping, INT8 guard), test is only reported"
    )
    backbone = load_backbone(opts.backbone, opts.weights, opts.image_size)
    pre = backbone.preprocess
    say(
        f"backbone: {backbone.name} ({backbone.weights_source}), input {pre.size}px, "
        f"{pre.interpolation}, crop {pre.crop_pct}, device {device}"
    )

    feats, cache_state, feature_s = _features(opts, splits, backbone, device, cache_dir, group)
    trained = train(opts, splits, backbone, feats, device, group)
    head, history = trained.head, trained.history
    metrics = _metrics(trained, splits, cache_state, feature_s, time.perf_counter() - started)
    if trained.depths is not None:
        metrics = replace(metrics, unfreeze_auto=trained.depths)
    scratch_model = None
    if opts.scratch_baseline:
        found, scratch_model = scratch(opts, splits, backbone, history)
        metrics = replace(metrics, scratch_baseline=found)
    info = run_info(opts, splits, backbone, device, metrics, trained.stages)
    check_weights(head, "the head")
    check_weights(backbone.model, "the backbone")
    kept = write_run(opts.out, backbone.model, head, info, history, opts.force, scratch_model)
    if kept:
        stale = " (artifacts of the replaced run: export again to update them)"
        say(f"kept from the replaced run: {', '.join(kept)}" + (stale if "export" in kept else ""))
    return info


def _features(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    device: torch.device,
    cache_dir: Path | None,
    group: Group | None,
) -> tuple[dict[str, torch.Tensor], str, float]:
    """The backbone's features of every image, through the cache (as it keeps the rows:
    training then sees what a later run reads); with the cache's state and the seconds."""
    workers = default_workers() if opts.workers is None else opts.workers
    feats, cache = cached_features(
        backbone, splits, device, opts.batch_size, workers, cache_dir, group
    )
    say(f"feature cache: {'off, ' if cache_dir is None else ''}{cache.line()}")
    if cache_dir is None:
        return feats, "off", cache.seconds
    precision = row_precision(
        cache_dir, backbone, device, feats, splits, opts.hidden, opts.head_training()
    )
    return (
        {role: precision.rounded(rows) for role, rows in feats.items()},
        cache.state,
        cache.seconds,
    )


def _metrics(
    trained: Trained, splits: Splits, cache_state: str, feature_s: float, seconds: float
) -> RunMetrics:
    """run.json's metrics: the kept epoch's (early stopping on val), test reported."""
    history = trained.history
    best = kept_row(history, trained.phase)
    _, test_top1 = evaluate_logits(trained.test_logits, torch.from_numpy(splits.test.labels))
    return RunMetrics(
        train_top1=best.train_top1,
        val_top1=best.val_top1,
        val_loss=best.val_loss,
        test_top1=round(test_top1, 5),
        best_epoch=best.epoch,
        epochs_run=len(history),
        feature_cache=cache_state,
        feature_s=round(feature_s, 2),
        time_s=round(seconds, 2),
    )


def _splits(opts: FinetuneOptions, given: Splits | None) -> Splits:
    """`given` when it is this run's data with its terms; else the data scanned now."""
    terms = (opts.val_fraction, opts.test_fraction, opts.seed)
    if given is None:
        return load_dataset(opts.data, *terms)
    if not given.matches(opts.data, *terms):
        raise ValueError(f"the splits given are not those of --data {opts.data} with {terms}")
    return given
