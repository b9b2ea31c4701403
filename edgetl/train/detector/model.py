"""The trainable part of the detector: a small FPN neck over the frozen pyramid and an
FCOS-style anchor-free head (decoupled class and box towers shared across levels), and the
decode from its outputs to boxes in input pixels, kept apart (module `decode`) so the INT8
recipes leave it in float (the decode quantized costs peers' INT8 detectors mAP).

Why FCOS and not SSDLite: no anchors to tune per dataset, one output a location, and its box
regression (distances to the sides, times the level's stride) decodes with a Relu, a Mul
and a Sub: float, cheap, on every runtime.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgetl.train.detector.pyramid import Pyramid, PyramidShape

PRIOR = 0.01  # the class branch's starting probability (RetinaNet's prior: stable focal loss)


def _conv(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Neck(nn.Module):
    """FPN: 1x1 laterals to `width` channels, top-down sums, a 3x3 conv a level."""

    def __init__(self, channels: tuple[int, ...], width: int):
        super().__init__()
        self.lateral = nn.ModuleList(_conv(c, width, 1) for c in channels)
        self.smooth = nn.ModuleList(_conv(width, width) for _ in channels)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [lateral(level) for lateral, level in zip(self.lateral, levels, strict=True)]
        for i in range(len(out) - 1, 0, -1):
            out[i - 1] = out[i - 1] + nn.functional.interpolate(out[i], scale_factor=2.0)
        return [smooth(level) for smooth, level in zip(self.smooth, out, strict=True)]


class Head(nn.Module):
    """Class logits (C) and box distances (4) at every location of every level."""

    def __init__(self, width: int, classes: int, depth: int = 2):
        super().__init__()
        self.cls_tower = nn.Sequential(*(_conv(width, width) for _ in range(depth)))
        self.box_tower = nn.Sequential(*(_conv(width, width) for _ in range(depth)))
        self.cls_out = nn.Conv2d(width, classes, 3, padding=1)
        self.box_out = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.normal_(self.cls_out.weight, std=0.01)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - PRIOR) / PRIOR))  # type: ignore[arg-type]
        nn.init.normal_(self.box_out.weight, std=0.01)
        nn.init.constant_(self.box_out.bias, 0.0)  # type: ignore[arg-type]

    def forward(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, C) logits and (B, L, 4) raw distances over the L locations of all levels."""
        logits, boxes = [], []
        for level in levels:
            logits.append(self.cls_out(self.cls_tower(level)).flatten(2))
            boxes.append(self.box_out(self.box_tower(level)).flatten(2))
        return torch.cat(logits, 2).transpose(1, 2), torch.cat(boxes, 2).transpose(1, 2)


def locations(shape: PyramidShape) -> tuple[torch.Tensor, torch.Tensor]:
    """Every location's centre (L, 2) in input pixels and its level's stride (L,), in the
    head's order (level by level, row-major)."""
    centres, strides = [], []
    for stride, grid in zip(shape.strides, shape.grids(), strict=True):
        steps = (torch.arange(grid, dtype=torch.float32) + 0.5) * stride
        y, x = torch.meshgrid(steps, steps, indexing="ij")
        centres.append(torch.stack([x.flatten(), y.flatten()], 1))
        strides.append(torch.full((grid * grid,), float(stride)))
    return torch.cat(centres), torch.cat(strides)


class Decode(nn.Module):
    """Raw distances -> boxes (x1, y1, x2, y2) in input pixels; logits -> scores. Float."""

    def __init__(self, shape: PyramidShape):
        super().__init__()
        centres, strides = locations(shape)
        self.centres: torch.Tensor
        self.strides: torch.Tensor
        self.register_buffer("centres", centres, persistent=False)
        self.register_buffer("strides", strides[:, None], persistent=False)

    def distances(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.relu(raw) * self.strides

    def forward(self, logits: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ltrb = self.distances(raw)
        boxes = torch.cat([self.centres - ltrb[..., :2], self.centres + ltrb[..., 2:]], -1)
        return boxes, torch.sigmoid(logits)


class DetectorHead(nn.Module):
    """What a detection run trains: neck, head and decode over the pyramid's levels."""

    def __init__(self, shape: PyramidShape, classes: int, width: int = 64, depth: int = 2):
        super().__init__()
        self.shape = shape
        self.classes = classes
        self.neck = Neck(shape.channels, width)
        self.head = Head(width, classes, depth)
        self.decode = Decode(shape)

    def raw(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.neck(levels))

    def forward(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(*self.raw(levels))


class Detector(nn.Module):
    """Images -> (boxes, scores): the frozen pyramid and the trained head, as exported."""

    def __init__(self, pyramid: Pyramid, head: DetectorHead):
        super().__init__()
        self.pyramid = pyramid
        self.detector = head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.detector(self.pyramid(images))
