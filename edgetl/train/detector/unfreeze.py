"""`--unfreeze K` for a detector: the last K stages of the backbone's pyramid fine-tuned with
the neck and head on images, warm-started from the head trained on cached pyramids. Images
are letterboxed once (uint8, both views: the cached mirrored view becomes a random flip per
step); BatchNorm statistics stay frozen (eval mode: as for classifiers, small sets make them
worse, and so torchrun's ranks train what one process would); the tail trains at a tenth of
the head's rate; early-stopped on val mAP50-95."""

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
    step_outputs,
)
from edgetl.train.detector.model import DetectorHead
from edgetl.train.detector.pyramid import Pyramid
from edgetl.train.distributed import Group

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


class Joined(nn.Module):
    """The pyramid and the head as one module (what DDP wraps): images -> raw outputs."""

    def __init__(self, pyramid: Pyramid, head: DetectorHead):
        super().__init__()
        self.pyramid = pyramid
        self.head = head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.raw(self.pyramid(images))


def train_unfrozen(
    pyramid: Pyramid,
    head: DetectorHead,
    trainable: list[nn.Parameter],
    train: Letterboxed,
    val: tuple[Letterboxed, DetectionSet],
    settings: NmsSettings,
    training: DetectorTraining,
    phase: str,
    group: Group | None = None,
) -> list[EpochLine]:
    """Fine-tune `trainable` (the pyramid's tail) with `head` in place; both end with the
    weights of the best val epoch, frozen again.

    Every BatchNorm keeps its statistics (the head's from its cached training): then an
    image's loss does not depend on the others in its batch, and under torchrun (`group`)
    each rank's share of a batch, its loss weighted by its share of the batch's positives
    (DDP averages the gradients), trains the very weights one process would. (SyncBatchNorm,
    the other way, runs on GPUs only; edgetl's detector fine-tuning runs on CPUs.) Val is
    split across the ranks and gathered, so every rank takes the same early stop."""
    for parameter in trainable:
        parameter.requires_grad_(True)
    # The head trained on cached rows in channels_last (fit.py): every rank's alike, as DDP
    # requires the same strides on every rank
    model = Joined(pyramid, head.to(memory_format=torch.channels_last))
    forward = _data_parallel(model) if group is not None else model
    rng = np.random.default_rng(training.seed)
    count = len(train.views[0])

    def epoch(optimizer: torch.optim.Optimizer, schedule: Schedule) -> float:
        model.eval()  # BatchNorm statistics frozen; the weights still learn
        order, view = rng.permutation(count), rng.integers(0, len(train.views), count)
        return _epoch(forward, head, train, order, view, optimizer, schedule, training, group)

    def validate() -> DetectionScores:
        found = outputs(pyramid, head, val[0], ranks=_ranks(group))
        if group is not None:
            found = _gathered(found, len(val[0].views[0]), head, group)
        return scored(found, val[1], val[0].letterbox, settings)[0]

    groups = [{"params": trainable, "lr": training.lr * TAIL_LR},
              {"params": list(head.parameters()), "lr": training.lr}]  # fmt: skip
    steps = -(-count // training.batch_size)
    history = run_epochs(model, groups, steps, epoch, validate, training, phase, phase)
    for parameter in trainable:
        parameter.requires_grad_(False)
    return history


def _epoch(
    forward: nn.Module,
    head: DetectorHead,
    train: Letterboxed,
    order: np.ndarray,
    view: np.ndarray,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    training: DetectorTraining,
    group: Group | None,
) -> float:
    """One epoch in `order`; under torchrun this rank's share (every world-th image) of
    each batch. The mean loss of the images this rank saw."""
    rank, world = _ranks(group)
    total, seen = 0.0, 0
    for start in range(0, len(order), training.batch_size):
        index, views = order[start:][: training.batch_size], view[start:][: training.batch_size]
        mine, mine_views = index[rank::world], views[rank::world]
        # An empty share (a last batch smaller than the world) runs the batch's first image
        # at weight 0: every rank must run backward for DDP's all-reduce.
        empty = not len(mine)
        if empty:
            mine, mine_views = index[:1], views[:1]
        labels, boxes = train.truth(mine, mine_views)
        scale = _share_of_positives(labels, head, group, empty)
        outputs = forward(train.inputs(mine, mine_views))
        loss = step_outputs(head, outputs, labels, boxes, optimizer, schedule, scale)
        if not empty:
            total, seen = total + loss * len(mine), seen + len(mine)
    return total / max(seen, 1)


def _ranks(group: Group | None) -> tuple[int, int]:
    return (group.rank, group.world) if group is not None else (0, 1)


def _share_of_positives(labels: torch.Tensor, head: DetectorHead, group: Group | None,
                        empty: bool = False) -> float:  # fmt: skip
    """world x this share's positives / the whole batch's: the losses are per positive (of
    the share), and DDP averages the ranks' gradients; so weighted, the average is the
    gradient of the whole batch's loss per positive, as in one process. 0 for an empty
    share's stand-in image."""
    if group is None:
        return 1.0
    import torch.distributed as dist

    mine = 0.0 if empty else float((labels < head.classes).sum())
    every = torch.tensor([mine], dtype=torch.float64)
    dist.all_reduce(every)
    return 0.0 if empty else group.world * max(mine, 1.0) / max(float(every[0]), 1.0)


def _gathered(found: list[tuple[np.ndarray, np.ndarray]], total: int, head: DetectorHead,
              group: Group) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Every rank's share of the outputs (rank r held images r, r + world, ...), on every
    rank, in image order."""
    import torch.distributed as dist

    per = -(-total // group.world)
    locations = head.shape.locations
    parts = []
    for which, width in ((0, 4), (1, head.classes)):
        mine = torch.zeros(per, locations, width)
        for i, pair in enumerate(found):
            mine[i] = torch.from_numpy(pair[which])
        every = [torch.zeros_like(mine) for _ in range(group.world)]
        dist.all_gather(every, mine)
        parts.append(every)
    boxes, scores = parts
    return [(boxes[i % group.world][i // group.world].numpy(),
             scores[i % group.world][i // group.world].numpy()) for i in range(total)]  # fmt: skip


def _data_parallel(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)  # CPU: gloo


def outputs(pyramid: Pyramid, head: DetectorHead, images: Letterboxed, batch: int = 32,
            ranks: tuple[int, int] = (0, 1)) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """(boxes, scores) an image through the pyramid and the head, in input pixels; `ranks`
    (rank, world): only every world-th image from the rank's own."""
    pyramid.eval()
    head.eval()
    found = []
    everything = np.arange(len(images.views[0]))[ranks[0] :: ranks[1]]
    with torch.inference_mode():
        for start in range(0, len(everything), batch):
            index = everything[start : start + batch]
            boxes, scores = head(pyramid(images.inputs(index, np.zeros_like(index))))
            found += list(zip(boxes.numpy(), scores.numpy(), strict=True))
    return found
