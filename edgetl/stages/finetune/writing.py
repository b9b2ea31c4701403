"""A run written whole: its weights (safetensors), history.csv and run.json, staged and
moved into place; what a replaced run held beside them is kept."""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import asdict, fields
from pathlib import Path

import torch
from torch import nn

from edgetl.core.data.splits import Splits
from edgetl.core.files import atomic_write_text, sha256_file, staged_dir
from edgetl.core.records import RUN_FILE, DataInfo, HeadInfo, RunInfo, RunMetrics, TrainInfo
from edgetl.core.versions import versions
from edgetl.stages.finetune.options import FinetuneOptions
from edgetl.train.backbones import Backbone
from edgetl.train.loop import EpochRow
from edgetl.train.model import BACKBONE_WEIGHTS, HEAD_WEIGHTS, HISTORY_FILE, Head
from edgetl.train.scratch import SCRATCH_WEIGHTS


def run_info(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    device: torch.device,
    metrics: RunMetrics,
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


def write_run(
    out: Path,
    backbone: nn.Module,
    head: Head,
    info: RunInfo,
    history: list[EpochRow],
    force: bool,
    scratch: nn.Module | None = None,
) -> list[str]:
    """The run written whole (staged, then moved into place); what a replaced run held
    beside the run's own files is kept: returns those names. `scratch`: the
    --scratch-baseline model, kept beside (bench --robustness's yardstick)."""
    from safetensors.torch import save_file

    kept: list[str] = []
    own = (RUN_FILE, BACKBONE_WEIGHTS, HEAD_WEIGHTS, HISTORY_FILE, SCRATCH_WEIGHTS)
    with staged_dir(out, force, "run", RUN_FILE, own=own, kept=kept) as tmp:
        save_file(
            {k: v.contiguous() for k, v in backbone.state_dict().items()},
            str(tmp / BACKBONE_WEIGHTS),
        )
        save_file(head.state_dict(), str(tmp / HEAD_WEIGHTS))
        atomic_write_text(tmp / HISTORY_FILE, history_csv(history))
        weights = [BACKBONE_WEIGHTS, HEAD_WEIGHTS]
        if scratch is not None:
            save_file(scratch.state_dict(), str(tmp / SCRATCH_WEIGHTS))
            weights.append(SCRATCH_WEIGHTS)
        info.weights = {name: sha256_file(tmp / name) for name in weights}
        info.write(tmp)
    return kept


def history_csv(history: list[EpochRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(EpochRow)])
    writer.writeheader()
    writer.writerows(asdict(row) for row in history)
    return buffer.getvalue()
