"""The fine-tuned classifier (frozen backbone + trained head) and the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgetl.artifacts import read_json
from edgetl.data import Preprocess, Splits, load_dataset
from edgetl.errors import EdgetlError

RUN_FILE = "edgetl.json"
RUN_SCHEMA = "edgetl.run/1"
BACKBONE_WEIGHTS = "backbone.safetensors"
HEAD_WEIGHTS = "head.safetensors"


class Head(nn.Module):
    """Standardize backbone features with training-set statistics, then a linear layer or small MLP.

    The statistics are buffers, so they travel into the ONNX graph with the weights.
    """

    def __init__(self, num_features: int, num_classes: int, hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(num_features, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))

    def set_feature_stats(self, features: torch.Tensor) -> None:
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.feature_mean) / self.feature_std)


class Classifier(nn.Module):
    """Images in, logits out: what gets exported."""

    def __init__(self, backbone: nn.Module, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


@dataclass
class Run:
    """A finished fine-tuning run directory, read back from edgetl.json."""

    path: Path
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.meta["preprocess"])

    def splits(self) -> Splits:
        """The run's train/val split, rebuilt from its data source (reads the data again)."""
        data = self.meta["data"]
        return load_dataset(data["source"], data["val_fraction"], data["seed"])

    def classifier(self) -> Classifier:
        from safetensors.torch import load_file

        from edgetl.backbones import create_architecture

        backbone = create_architecture(self.meta["backbone"]["timm_name"])
        backbone.load_state_dict(load_file(str(self.path / BACKBONE_WEIGHTS)))
        head_cfg = self.meta["head"]
        head = Head(self.meta["backbone"]["num_features"], len(self.classes), head_cfg["hidden"])
        head.load_state_dict(load_file(str(self.path / HEAD_WEIGHTS)))
        return Classifier(backbone, head).eval()


def load_run(path: Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise EdgetlError(f"{path}: no such run directory; create one with `edgetl finetune`")
    meta = read_json(path / RUN_FILE, f"{RUN_FILE} (a run from `edgetl finetune`)")
    if meta.get("schema") != RUN_SCHEMA:
        raise EdgetlError(
            f"{path / RUN_FILE}: schema {meta.get('schema')!r}, expected {RUN_SCHEMA!r}"
        )
    for name in (BACKBONE_WEIGHTS, HEAD_WEIGHTS):
        if not (path / name).is_file():
            raise EdgetlError(f"{path / name}: missing; the run is incomplete, re-run finetune")
    return Run(path, meta)
