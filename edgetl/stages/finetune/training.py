"""Training a run's model: the head on cached features, then (--unfreeze K or auto) the
last backbone stages with it; --scratch-baseline's small CNN beside it."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgetl.core.data.splits import Splits
from edgetl.core.events import say
from edgetl.core.ui import table
from edgetl.stages.finetune.options import AUTO, FinetuneOptions
from edgetl.train.backbones import Backbone, stage_count
from edgetl.train.depth import DepthTrial, against_scratch, choose_depth, in_words
from edgetl.train.distributed import Group
from edgetl.train.loop import EpochRow, eval_logits, kept_row, train_head
from edgetl.train.model import Classifier, Head
from edgetl.train.scratch import scratch_baseline
from edgetl.train.unfreeze import predict, train_unfrozen


@dataclass
class Trained:
    """What training kept: the head (inside the backbone's model when unfrozen), every
    epoch's history, the kept model's test logits, the history phase it was kept from, and
    with --unfreeze auto what each depth scored."""

    head: Head
    history: list[EpochRow]
    test_logits: torch.Tensor
    phase: str
    stages: int
    depths: dict[str, Any] | None = None


def train(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    feats: dict[str, torch.Tensor],
    device: torch.device,
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
    history = train_head(head, feats["train"], train_y, feats["val"], val_y, settings)
    if not opts.unfreeze:
        return Trained(head, history, eval_logits(head, feats["test"]), "head", 0)
    model = Classifier(backbone.model, head)
    pre = backbone.preprocess
    if opts.unfreeze == AUTO:
        probe = DepthTrial(0, *_kept(history, "head"), time.perf_counter() - started)
        kept, depths = _unfreeze_auto(opts, model, splits, pre, device, group, probe,
                                      history)  # fmt: skip
        phase = "head" if kept == 0 else f"unfreeze {kept}"
    else:
        kept, depths, phase = int(opts.unfreeze), None, "unfreeze"
        history += train_unfrozen(
            model, splits.train, splits.val, pre, kept, settings, device, group
        )
    # train_unfrozen hands the model back on the CPU
    test_logits, _ = predict(model, splits.test, pre, opts.batch_size, torch.device("cpu"))
    return Trained(head, history, test_logits, phase, kept, depths)


def scratch(
    opts: FinetuneOptions,
    splits: Splits,
    backbone: Backbone,
    history: list[EpochRow],
) -> tuple[dict[str, Any], nn.Module]:
    """The small CNN from scratch on the same split and input size, against the probe;
    and the model (the run keeps it: what an attack on the public teacher does to a model
    that inherited nothing)."""
    measured, model = scratch_baseline(splits.train, splits.val, len(splits.classes),
                                       backbone.preprocess, opts.head_training())  # fmt: skip
    found: dict[str, Any] = dict(measured)
    probe_val, _ = _kept(history, "head")
    found["probe_val_top1"] = probe_val
    found["finding"] = against_scratch(probe_val, found["val_top1"])
    say(found["finding"])
    return found, model


def _kept(history: list[EpochRow], phase: str) -> tuple[float, float]:
    """(val top-1, val loss) of the epoch early stopping kept in `phase`."""
    best = kept_row(history, phase)
    return best.val_top1, best.val_loss


def _unfreeze_auto(
    opts: FinetuneOptions,
    model: Classifier,
    splits: Splits,
    pre: Any,
    device: torch.device,
    group: Group | None,
    probe: DepthTrial,
    history: list[EpochRow],
) -> tuple[int, dict[str, Any]]:
    """K = 1, 2 (as the backbone has stages), each warm-started from the one before and
    scored on val; the model is left with the chosen K's weights. Appends to `history`."""
    trials, states = [probe], {0: copy.deepcopy(model.state_dict())}
    for stages in auto_depths(model.backbone):
        started = time.perf_counter()
        phase = f"unfreeze {stages}"
        history += train_unfrozen(model, splits.train, splits.val, pre, stages,
                                  opts.head_training(), device, group, phase)  # fmt: skip
        trials.append(DepthTrial(stages, *_kept(history, phase), time.perf_counter() - started))
        states[stages] = copy.deepcopy(model.state_dict())
    chosen = choose_depth(trials, opts.unfreeze_tolerance)
    model.load_state_dict(states[chosen.stages])
    finding = in_words(trials, chosen, opts.unfreeze_tolerance)
    say(
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
    say(finding)
    depths = {"tolerance_pt": opts.unfreeze_tolerance, "chosen": chosen.stages,
              "finding": finding, "trials": [t.to_dict() for t in trials]}  # fmt: skip
    return chosen.stages, depths


def auto_depths(backbone: nn.Module) -> list[int]:
    """The depths --unfreeze auto tries beyond the probe: 1 and 2 stages, as there are."""
    return [k for k in (1, 2) if k < stage_count(backbone)]
