"""sensitivity.json, written into every INT8 artifact: per quantizable layer its final
precision and, where the guard's ranker measured it, the task's val metric with that layer
alone kept float (the rest INT8) and its ranking score; FP32's and plain INT8's metric on the
same images; and the ladder's path (every attempt the guard judged). One shape for both
tasks: top-1 for classifiers, mAP50-95 for detectors. `edgetl inspect ART` shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.core.fields import read_fields, write_fields
from edgetl.core.files import atomic_write_json, read_json
from edgetl.core.records.base import open_record

SENSITIVITY_FILE = "sensitivity.json"
SENSITIVITY_SCHEMA = "edgetl.sensitivity/1"
METRICS = {"top1": "val top-1", "map50_95": "val mAP50-95"}


@dataclass(frozen=True)
class LayerRow:
    layer: str
    precision: str  # int8 | float32 | float16: as the artifact runs it
    metric: float | None = None  # with this layer alone float (None: not ranked)
    score: float | None = None  # what the ranker ordered by


@dataclass(frozen=True)
class PathStep:
    """One attempt of the guard's ladder, as judged (on all of val)."""

    name: str
    metric: float
    drop_upper_pts: float | None
    verdict: str | None
    float_layers: int = 0


@dataclass(frozen=True)
class SensitivityReport:
    task: str  # classify | detect
    metric: str  # top1 | map50_95
    images: int | None  # val images each layer was measured on (None: not ranked)
    fp32: float | None  # FP32's metric on those images
    plain: float | None  # plain INT8's
    ranked_by: str  # what `score` is, or why nothing was ranked
    layers: list[LayerRow] = field(default_factory=list)
    path: list[PathStep] = field(default_factory=list)
    kept: str = ""  # the attempt the artifact is
    schema: str = SENSITIVITY_SCHEMA
    edgetl: str = __version__

    @property
    def ranked(self) -> bool:
        return self.images is not None

    def write(self, folder: Path) -> None:
        atomic_write_json(folder / SENSITIVITY_FILE, write_fields(self))

    @classmethod
    def read(cls, folder: Path) -> SensitivityReport:
        path = folder / SENSITIVITY_FILE
        data = read_json(path, SENSITIVITY_FILE)
        source = open_record(data, path, (SENSITIVITY_SCHEMA,), "Export the artifact again.")
        return read_fields(cls, data, source)

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)


def layer_rows(
    quantizable: list[str],
    float_layers: list[str],
    ranked: list[tuple[str, float, float]],
    float_precision: str = "float32",
) -> list[LayerRow]:
    """Every quantizable layer: the ranked ones in the ranker's order, then the rest."""
    kept = set(float_layers)

    def precision(name: str) -> str:
        return float_precision if name in kept else "int8"

    rows = [LayerRow(name, precision(name), round(metric, 5), round(score, 5))
            for name, score, metric in ranked]  # fmt: skip
    seen = {row.layer for row in rows}
    rows += [LayerRow(name, precision(name)) for name in quantizable if name not in seen]
    return rows
