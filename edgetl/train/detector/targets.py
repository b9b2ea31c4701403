"""FCOS's assignment and losses, computed once per image and view (the boxes never move on
cached features), with torchvision's focal and GIoU losses.

A location is positive for an object when it lies inside the object's box and within
CENTRE_RADIUS strides of its centre (centre sampling), and the object's size suits the
location's level (its longest distance to a side within the level's range); of several
objects, the smallest wins.
"""

from __future__ import annotations

import torch
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

CENTRE_RADIUS = 1.5
# The longest side distance each level (strides 8/16/32) answers for, in input pixels: FCOS's
# ranges scaled to these small inputs (its 64/128/256/512 are for 800-pixel images).
LEVEL_RANGES = ((0.0, 48.0), (48.0, 96.0), (96.0, float("inf")))
BOX_WEIGHT = 2.0  # GIoU's weight against the focal loss (GFL/ATSS use 2)


def assign(
    boxes: torch.Tensor,
    classes: torch.Tensor,
    centres: torch.Tensor,
    strides: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's targets: the class a location answers for (L,; `num_classes` for
    background) and the box it regresses (L, 4; zeros for background)."""
    count = len(centres)
    if not len(boxes):
        return torch.full((count,), num_classes, dtype=torch.long), torch.zeros(count, 4)
    x, y = centres[:, :1], centres[:, 1:]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1)
    inside = ltrb.min(-1).values > 0
    middle = (boxes[:, :2] + boxes[:, 2:]) / 2
    radius = strides[:, None] * CENTRE_RADIUS
    near = ((x - middle[:, 0]).abs() < radius) & ((y - middle[:, 1]).abs() < radius)
    longest = ltrb.max(-1).values
    low, high = _ranges(strides)
    fits = (longest >= low[:, None]) & (longest <= high[:, None])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(count, -1)
    area = torch.where(inside & near & fits, area, torch.full_like(area, float("inf")))
    best, which = area.min(1)
    labels = torch.where(best.isinf(), num_classes, classes[which])
    return labels.long(), boxes[which] * (~best.isinf())[:, None]


def _ranges(strides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    levels = sorted({float(s) for s in strides})
    low = torch.zeros_like(strides)
    high = torch.zeros_like(strides)
    for level, (start, stop) in zip(levels, LEVEL_RANGES, strict=False):
        low[strides == level] = start
        high[strides == level] = stop
    return low, high


def losses(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    target_boxes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal loss over every location and GIoU over the positives, each per positive.
    Shapes: logits (B, L, C), boxes (B, L, 4) decoded, labels (B, L), target_boxes (B, L, 4)."""
    classes = logits.shape[-1]
    positive = labels < classes
    count = max(float(positive.sum()), 1.0)
    onehot = torch.nn.functional.one_hot(labels.clamp(max=classes), classes + 1)[..., :classes]
    focal = sigmoid_focal_loss(logits, onehot.to(logits.dtype), reduction="sum") / count
    if not positive.any():
        return focal, boxes.sum() * 0.0
    giou = generalized_box_iou_loss(boxes[positive], target_boxes[positive], reduction="sum")
    return focal, BOX_WEIGHT * giou / count
