"""The run record (RUN/edgetl.json): everything a later stage needs of a fine-tuning run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl import __version__
from edgetl.core.fields import read_fields, write_fields
from edgetl.core.files import atomic_write_json, read_json
from edgetl.core.preprocess import Preprocess
from edgetl.core.records.base import check_classes, open_record

if TYPE_CHECKING:
    from edgetl.core.data.splits import Splits

RUN_FILE = "edgetl.json"
RUN_SCHEMA = "edgetl.run/3"  # 3: sha256 of the weight files


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    timm_name: str
    num_features: int
    weights_source: str
    weights_sha256: str


@dataclass(frozen=True)
class HeadInfo:
    kind: str  # linear | mlp
    hidden: int


@dataclass(frozen=True)
class TrainInfo:
    """How the head was trained: also what the INT8 guard's head refit reuses."""

    epochs: int
    lr: float
    batch_size: int
    seed: int
    patience: int
    device: str = "cpu"
    amp: bool = False
    unfreeze: int = 0


@dataclass(frozen=True)
class DataInfo:
    """Where the data came from and exactly which images each role got."""

    source: str
    strategy: str
    val_fraction: float
    test_fraction: float
    seed: int
    fingerprint: str
    sizes: dict[str, int]  # role -> images
    key_sha256: dict[str, str]  # role -> sha256 of its image keys, in order

    @classmethod
    def from_splits(cls, splits: Splits) -> DataInfo:
        roles = {"train": splits.train, "val": splits.val, "test": splits.test}
        return cls(
            source=splits.source,
            strategy=splits.strategy,
            val_fraction=splits.val_fraction,
            test_fraction=splits.test_fraction,
            seed=splits.seed,
            fingerprint=splits.fingerprint,
            sizes={role: len(images) for role, images in roles.items()},
            key_sha256={role: images.key_hash() for role, images in roles.items()},
        )


@dataclass
class RunMetrics:
    """What the run measured: the epoch early stopping kept (chosen on val), test reported
    only, and how the features came (the cache's state, seconds)."""

    train_top1: float
    val_top1: float
    val_loss: float
    test_top1: float
    best_epoch: int
    epochs_run: int
    feature_cache: str = ""  # off, hit, miss (N new, M cached)
    feature_s: float = 0.0
    time_s: float = 0.0
    # --unfreeze auto: each depth tried (train/depth.py); --scratch-baseline: the small CNN
    unfreeze_auto: dict[str, Any] | None = field(default=None, metadata={"omit": None})
    scratch_baseline: dict[str, Any] | None = field(default=None, metadata={"omit": None})


@dataclass
class RunInfo:
    """edgetl.json: everything a later stage needs to know about a fine-tuning run."""

    backbone: BackboneInfo
    head: HeadInfo
    classes: list[str]
    preprocess: Preprocess
    data: DataInfo
    train: TrainInfo
    metrics: RunMetrics
    versions: dict[str, str]
    command: list[str]
    # file -> sha256 of the run's weights: a head or backbone swapped in from another run
    # (same shapes, other classes' weights) is refused instead of exported silently. No
    # default: a run without it is not read (it could not be checked).
    weights: dict[str, str]
    edgetl: str = __version__
    schema: str = RUN_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> RunInfo:
        source = open_record(
            data, path, (RUN_SCHEMA,), "Re-run `edgetl finetune` with this version."
        )
        info = read_fields(cls, data, source)
        info.classes = check_classes(info.classes, path)
        return info

    def write(self, run_dir: Path) -> None:
        atomic_write_json(run_dir / RUN_FILE, self.to_dict())

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        path = run_dir / RUN_FILE
        return cls.from_dict(read_json(path, f"{RUN_FILE} (a run from `edgetl finetune`)"), path)
