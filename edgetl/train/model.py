"""The fine-tuned classifier (frozen backbone + trained head) and the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetl.core.data.dataset import load_dataset
from edgetl.core.data.splits import Splits
from edgetl.core.errors import EdgetlError
from edgetl.core.files import sha256_file
from edgetl.core.preprocess import Preprocess
from edgetl.core.records import RUN_FILE, RunInfo

BACKBONE_WEIGHTS = "backbone.safetensors"
HISTORY_FILE = "history.csv"
HEAD_WEIGHTS = "head.safetensors"


class Head(nn.Module):
    """Standardize backbone features with training-set statistics, then a linear layer or small MLP.

    The statistics are buffers, so they travel into the ONNX graph with the weights.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, num_features: int, num_classes: int, hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        self.net: nn.Module
        if hidden > 0:
            self.net = nn.Sequential(
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
    info: RunInfo

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    @property
    def preprocess(self) -> Preprocess:
        return self.info.preprocess

    @property
    def seed(self) -> int:
        return self.info.train.seed

    def sha256(self) -> str:
        return sha256_file(self.path / RUN_FILE)

    def splits(self, scanned: Splits | None = None) -> Splits:
        """The run's train/val/test split, rebuilt from its data source (reads the data again),
        or `scanned` when the caller holds it already (the search: scanned once).

        Data that changed since the run would silently move images between roles: refused.
        """
        data = self.info.data
        terms = (data.val_fraction, data.test_fraction, data.seed)
        if scanned is not None and scanned.matches(data.source, *terms):
            splits = scanned
        else:
            splits = load_dataset(data.source, *terms)
        if splits.fingerprint != data.fingerprint:
            raise EdgetlError(
                f"{data.source}: the data changed since the run {self.path} was trained "
                "(fingerprint differs), so its train/val/test split cannot be rebuilt; "
                "restore the data or re-run finetune"
            )
        return splits

    def new_head(self) -> Head:
        return Head(self.info.backbone.num_features, len(self.classes), self.info.head.hidden)

    def head(self) -> Head:
        from safetensors.torch import load_file

        head = self.new_head()
        head.load_state_dict(load_file(str(self.path / HEAD_WEIGHTS)))
        return head.eval()

    def classifier(self) -> Classifier:
        from safetensors.torch import load_file

        from edgetl.train.backbones import create_architecture

        backbone = create_architecture(self.info.backbone.timm_name)
        backbone.load_state_dict(load_file(str(self.path / BACKBONE_WEIGHTS)))
        return Classifier(backbone, self.head()).eval()


def load_run(path: Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise EdgetlError(f"{path}: no such run directory; create one with `edgetl finetune`")
    info = RunInfo.read(path)
    for name in (BACKBONE_WEIGHTS, HEAD_WEIGHTS):
        if not (path / name).is_file():
            raise EdgetlError(f"{path / name}: missing; the run is incomplete, re-run finetune")
        recorded = info.weights.get(name)
        if recorded is None or sha256_file(path / name) != recorded:
            raise EdgetlError(
                f"{path / name}: its sha256 differs from the one {RUN_FILE} records: the file "
                "was replaced (e.g. by another run's) or damaged; restore it or re-run finetune"
            )
    return Run(path, info)


def torch_logits(model: torch.nn.Module, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return np.concatenate(
            [
                model(torch.from_numpy(images[i : i + batch_size])).numpy()
                for i in range(0, len(images), batch_size)
            ]
        )
