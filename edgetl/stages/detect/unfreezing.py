"""`finetune --task detect --unfreeze K|auto`: after the head has trained on cached pyramids,
the last K backbone stages of the pyramid fine-tuned with it on images (train/detector/
unfreeze.py). auto tries K = 1 and 2 (as the pyramid has stages), each warm-started from the
one before, and keeps the smallest K whose val mAP50-95 is within --unfreeze-tolerance
points of the best, the head alone (K = 0) included: as for classifiers (train/depth.py).
Under torchrun every rank fine-tunes its share of each batch under DDP (rank 0 in
`unfreeze`, the others in `follow`), training the weights one process would."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgetl.core.data.detection import DetectionSet
from edgetl.core.data.detection_splits import DetectionSplits
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.letterbox import Letterbox
from edgetl.core.postprocess import NmsSettings
from edgetl.core.ui import table
from edgetl.stages.finetune.options import AUTO, FinetuneOptions
from edgetl.train.depth import DepthTrial, choose_depth, in_words
from edgetl.train.detector.fit import DetectorTraining, EpochLine
from edgetl.train.detector.model import DetectorHead
from edgetl.train.detector.pyramid import Pyramid
from edgetl.train.detector.unfreeze import (
    Letterboxed,
    letterboxed,
    outputs,
    tail,
    train_unfrozen,
)
from edgetl.train.distributed import Group

AUTO_DEPTHS = (1, 2)


@dataclass(frozen=True)
class Unfrozen:
    stages: int  # K kept (0: the head alone)
    history: list[EpochLine]
    record: dict[str, Any]  # what the run records of it
    test: list[Any]  # (boxes, scores) a test image through the fine-tuned pyramid


def unfreeze(opts: FinetuneOptions, backbone: nn.Module, pyramid: Pyramid, head: DetectorHead,
             splits: DetectionSplits, letterbox: Letterbox, settings: NmsSettings,
             training: DetectorTraining, head_history: list[EpochLine],
             group: Group | None = None) -> Unfrozen:  # fmt: skip
    """The pyramid's tail and the head fine-tuned in place (the chosen K's weights); under
    torchrun rank 0's part, the other ranks `follow`."""
    train, val = _images(splits, letterbox, head)
    history = list(head_history)
    depths = _depths(opts, pyramid, backbone)
    best_head = max(line.val_map50_95 for line in head_history)
    trials = [DepthTrial(0, best_head, 0.0, sum(line.seconds for line in head_history))]
    states = {0: copy.deepcopy((pyramid.state_dict(), head.state_dict()))}
    for stages in depths:
        started, phase = time.perf_counter(), f"unfreeze {stages}"
        found = train_unfrozen(pyramid, head, tail(pyramid, backbone, stages), train, val,
                               settings, training, phase, group)  # fmt: skip
        history += found
        best = max(line.val_map50_95 for line in found)
        trials.append(DepthTrial(stages, best, 0.0, time.perf_counter() - started))
        states[stages] = copy.deepcopy((pyramid.state_dict(), head.state_dict()))
    chosen = choose_depth(trials, opts.unfreeze_tolerance) if opts.unfreeze == AUTO else trials[-1]
    pyramid.load_state_dict(states[chosen.stages][0])
    head.load_state_dict(states[chosen.stages][1])
    record = {"asked": str(opts.unfreeze), "stages": chosen.stages,
              "trials": [{"stages": t.stages, "val_map50_95": round(t.val_top1, 5),
                          "seconds": round(t.seconds, 2)} for t in trials]}  # fmt: skip
    if opts.unfreeze == AUTO:
        record["finding"] = _said(trials, chosen, opts.unfreeze_tolerance)
    test = letterboxed(splits.images("test"), splits.test, letterbox, head, mirrored=False)
    return Unfrozen(chosen.stages, history, record, outputs(pyramid, head, test))


def follow(opts: FinetuneOptions, backbone: nn.Module, pyramid: Pyramid, head: DetectorHead,
           splits: DetectionSplits, letterbox: Letterbox, training: DetectorTraining,
           group: Group) -> None:  # fmt: skip
    """A rank other than 0 under torchrun: its share of every batch of each depth rank 0
    fine-tunes, in the same order. DDP brings rank 0's weights (its trained head, and with
    auto the depth before's) each time it wraps the model."""
    train, val = _images(splits, letterbox, head)
    for stages in _depths(opts, pyramid, backbone):
        train_unfrozen(pyramid, head, tail(pyramid, backbone, stages), train, val, NmsSettings(),
                       training, f"unfreeze {stages}", group)  # fmt: skip


def _images(splits: DetectionSplits, letterbox: Letterbox, head: DetectorHead
            ) -> tuple[Letterboxed, tuple[Letterboxed, DetectionSet]]:  # fmt: skip
    train = letterboxed(splits.images("train"), splits.train, letterbox, head, mirrored=True)
    val = (letterboxed(splits.images("val"), splits.val, letterbox, head, False), splits.val)
    return train, val


def _depths(opts: FinetuneOptions, pyramid: Pyramid, backbone: nn.Module) -> list[int]:
    if opts.unfreeze != AUTO:
        return [int(opts.unfreeze)]
    return [k for k in AUTO_DEPTHS if _fits(pyramid, backbone, k)]


def _fits(pyramid: Pyramid, backbone: nn.Module, stages: int) -> bool:
    try:
        tail(pyramid, backbone, stages)
    except EdgetlError:  # the pyramid has no such stage
        return False
    return True


def _said(trials: list[DepthTrial], chosen: DepthTrial, tolerance: float) -> str:
    rows = [[t.stages, f"{t.val_top1:.4f}", f"{t.seconds:.1f}", "kept" if t is chosen else ""]
            for t in trials]  # fmt: skip
    say(table(f"--unfreeze auto: each depth's val mAP50-95 (tolerance {tolerance:g} pt)",
              ["stages trained", "val mAP50-95", "seconds", ""], rows))  # fmt: skip
    finding = in_words(trials, chosen, tolerance)
    say(finding)
    return finding
