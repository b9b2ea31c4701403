"""The frozen backbone's feature pyramid (timm `features_only`, strides 8/16/32), and its rows
in the feature cache: one image's levels flattened into one row, unflattened by shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from edgetl.core.errors import EdgetlError
from edgetl.train.backbones import Backbone

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class PyramidShape:
    """The levels' channels and the input size: what a flat cache row unflattens into."""

    channels: tuple[int, ...]
    size: int
    strides: tuple[int, ...] = STRIDES

    def grids(self) -> list[int]:
        return [self.size // s for s in self.strides]

    @property
    def locations(self) -> int:
        """The head's output locations over every level."""
        return sum(g * g for g in self.grids())

    @property
    def row_length(self) -> int:
        return sum(c * g * g for c, g in zip(self.channels, self.grids(), strict=True))

    def unflatten(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """(N, row_length) -> one (N, C, G, G) tensor a level."""
        levels, start = [], 0
        for channels, grid in zip(self.channels, self.grids(), strict=True):
            stop = start + channels * grid * grid
            levels.append(rows[:, start:stop].reshape(-1, channels, grid, grid))
            start = stop
        return levels


def flatten(levels: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([level.flatten(1) for level in levels], 1)


class Pyramid(nn.Module):
    """The backbone's levels at STRIDES: a list of tensors."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.features(images))


class FlatPyramid(nn.Module):
    """The pyramid as one flat row an image: what the feature cache stores."""

    def __init__(self, pyramid: Pyramid):
        super().__init__()
        self.pyramid = pyramid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return flatten(self.pyramid(images))


def pyramid_of(backbone: Backbone) -> tuple[Pyramid, PyramidShape]:
    """The multi-scale features of `backbone` (its pretrained weights), frozen."""
    size = backbone.preprocess.size
    if size % STRIDES[-1]:
        raise EdgetlError(f"--image-size {size}: a detector needs a multiple of {STRIDES[-1]}")
    pyramid, channels = pyramid_architecture(backbone.timm_name, backbone.name)
    result = pyramid.features.load_state_dict(backbone.model.state_dict(), strict=False)
    if result.missing_keys:
        raise EdgetlError(
            f"--backbone {backbone.name}: its pyramid lacks {len(result.missing_keys)} weights "
            f"(first: {result.missing_keys[:3]})"
        )
    return frozen(pyramid), PyramidShape(channels, size)


def pyramid_architecture(timm_name: str, name: str) -> tuple[Pyramid, tuple[int, ...]]:
    """The backbone's levels at STRIDES without weights, and their channels."""
    import timm

    features: Any = timm.create_model(
        timm_name, pretrained=False, features_only=True, out_indices=_indices(timm_name, name)
    )
    return Pyramid(features), tuple(features.feature_info.channels())


def frozen(pyramid: Pyramid) -> Pyramid:
    for parameter in pyramid.parameters():
        parameter.requires_grad_(False)
    return pyramid.eval()


def _indices(timm_name: str, name: str) -> tuple[int, ...]:
    """timm's feature indices of the levels at STRIDES."""
    import timm

    probe: Any = timm.create_model(timm_name, pretrained=False, features_only=True)
    reductions = list(cast(Any, probe).feature_info.reduction())
    missing = [s for s in STRIDES if s not in reductions]
    if missing:
        raise EdgetlError(
            f"--backbone {name}: no feature level at stride {missing}; a detector needs levels "
            f"at {STRIDES}"
        )
    return tuple(len(reductions) - 1 - reductions[::-1].index(s) for s in STRIDES)
