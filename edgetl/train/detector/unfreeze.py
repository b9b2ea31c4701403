"""`--unfreeze K` for a detector: the last K stages of the backbone's pyramid fine-tuned with
the neck and head on images, warm-started from the head trained on cached pyramids. Images
are letterboxed once (uint8, both views: the cached mirrored view becomes a random flip per
step); BatchNorm statistics stay frozen (eval mode, as for classifiers: small sets make them
worse); the tail trains at a tenth of the head's rate; early-stopped on val mAP50-95."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgetl.core.data.detection import DetectionSet
from edgetl.core.data.imageset import ImageSet
from edgetl.core.errors import EdgetlError
from edgetl.core.letterbox import Letterbox
from edgetl.core.measures.detection import DetectionScores
from edgetl.core.postprocess import NmsSettings
from edgetl.core.ui import progress
from edgetl.train.backbones import stage_names
from edgetl.train.detector.fit import (
    DetectorTraining,
    EpochLine,
    Examples,
    Schedule,
    run_epochs,
    scored,
    step,
)
from edgetl.train.detector.model import DetectorHead
from edgetl.train.detector.pyramid import Pyramid

TAIL_LR = 0.1  # the unfrozen stages' peak rate, of the head's


@dataclass(frozen=True)
class Letterboxed:
    """A split's images letterboxed once (uint8), with each view's targets."""

    views: list[np.ndarray]  # (N, 3, S, S) uint8: as they are, and (train) mirrored
    targets: list[Examples]  # each view's labels and boxes a location (no rows)
    letterbox: Letterbox

    def inputs(self, index: np.ndarray, view: np.ndarray) -> torch.Tensor:
        crops = np.stack([self.views[v][i] for i, v in zip(index, view, strict=True)])
        return torch.from_numpy(self.letterbox.normalize(crops))

    def truth(self, index: np.ndarray, view: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's class and box a location, in the view it is shown in."""
        pairs = list(zip(index, view, strict=True))
        labels = torch.stack([self.targets[v].labels[i] for i, v in pairs])
        return labels, torch.stack([self.targets[v].boxes[i] for i, v in pairs])


def letterboxed(images: ImageSet, part: DetectionSet, letterbox: Letterbox, head: DetectorHead,
                mirrored: bool) -> Letterboxed:  # fmt: skip
    boxes = [letterbox] + ([_flipped(letterbox)] if mirrored else [])
    views, targets = [], []
    with progress() as bar:
        task = bar.add_task("letterboxing", total=len(images) * len(boxes), info="")
        for view in boxes:
            crops = []
            for i in range(len(images)):
                crops.append(images.crop(i, view))
                bar.advance(task)
            views.append(np.stack(crops) if crops else np.zeros((0, 3, 1, 1), np.uint8))
            targets.append(Examples.of(torch.zeros(len(images), 0), part, view, head))
    return Letterboxed(views, targets, letterbox)


def _flipped(letterbox: Letterbox) -> Letterbox:
    return Letterbox(letterbox.size, letterbox.mean, letterbox.std, letterbox.interpolation,
                     1.0, True)  # fmt: skip


def tail(pyramid: Pyramid, backbone: nn.Module, stages: int) -> list[nn.Parameter]:
    """The pyramid's parameters in the backbone's last `stages` coarse stages (timm's group
    matcher on the whole backbone; the stages past stride 32 are not in the pyramid)."""
    own = dict(pyramid.features.named_parameters())
    groups = [[n for n in group if n in own] for group in stage_names(backbone)]
    groups = [group for group in groups if group]
    if not 0 < stages < len(groups):
        raise EdgetlError(f"--unfreeze {stages}: this backbone's pyramid has {len(groups)} "
                          f"stages; choose 1 to {len(groups) - 1}")  # fmt: skip
    return [own[n] for group in groups[-stages:] for n in group]


def train_unfrozen(
    pyramid: Pyramid,
    head: DetectorHead,
    trainable: list[nn.Parameter],
    train: Letterboxed,
    val: tuple[Letterboxed, DetectionSet],
    settings: NmsSettings,
    training: DetectorTraining,
    phase: str,
) -> list[EpochLine]:
    """Fine-tune `trainable` (the pyramid's tail) with `head` in place; both end with the
    weights of the best val epoch, frozen again."""
    for parameter in trainable:
        parameter.requires_grad_(True)
    model = nn.ModuleDict({"pyramid": pyramid, "head": head})
    rng = np.random.default_rng(training.seed)
    count = len(train.views[0])

    def epoch(optimizer: torch.optim.Optimizer, schedule: Schedule) -> float:
        pyramid.eval()  # BatchNorm statistics frozen; the tail's weights still learn
        head.train()
        order, view = rng.permutation(count), rng.integers(0, len(train.views), count)
        total, seen = 0.0, 0
        for start in range(0, count, training.batch_size):
            index, views = (
                order[start : start + training.batch_size],
                view[start:][: training.batch_size],
            )
            if len(index) < 2:  # BatchNorm needs two
                continue
            labels = torch.stack(
                [train.targets[v].labels[i] for i, v in zip(index, views, strict=True)]
            )
            boxes = torch.stack(
                [train.targets[v].boxes[i] for i, v in zip(index, views, strict=True)]
            )
            levels = pyramid(train.inputs(index, views))
            total += step(head, levels, labels, boxes, optimizer, schedule) * len(index)
            seen += len(index)
        return total / max(seen, 1)

    def validate() -> DetectionScores:
        return scored(outputs(pyramid, head, val[0]), val[1], val[0].letterbox, settings)[0]

    groups = [{"params": trainable, "lr": training.lr * TAIL_LR},
              {"params": list(head.parameters()), "lr": training.lr}]  # fmt: skip
    steps = -(-count // training.batch_size)
    history = run_epochs(model, groups, steps, epoch, validate, training, phase, phase)
    for parameter in trainable:
        parameter.requires_grad_(False)
    return history


def outputs(pyramid: Pyramid, head: DetectorHead, images: Letterboxed, batch: int = 32
            ) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """(boxes, scores) an image through the pyramid and the head, in input pixels."""
    pyramid.eval()
    head.eval()
    found = []
    everything = np.arange(len(images.views[0]))
    with torch.inference_mode():
        for start in range(0, len(everything), batch):
            index = everything[start : start + batch]
            boxes, scores = head(pyramid(images.inputs(index, np.zeros_like(index))))
            found += list(zip(boxes.numpy(), scores.numpy(), strict=True))
    return found
