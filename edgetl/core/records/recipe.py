"""The calibration recipe record (calibration/*.toml, and the manifest's quantization.recipe):
which engine quantizes how, and how far the accuracy guard may go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgetl.core.fields import write_fields


@dataclass(frozen=True)
class GuardSettings:
    head_refit: bool = True
    max_float_layers: int = 16
    ranking_samples: int = 128
    qat: bool = True  # quantization-aware fine-tuning as the ladder's last rung


@dataclass(frozen=True)
class Recipe:
    name: str
    engine: str  # nncf | onnxruntime | pt2e (quantize/recipes.py checks it and the method)
    method: str
    symmetric_activations: bool = False
    per_channel_weights: bool = True
    samples: int = 300
    bias_correction: str = "fast"
    float_layers: tuple[str, ...] = ()  # name patterns kept in float
    float_ops: tuple[str, ...] = ()
    guard: GuardSettings = field(default_factory=GuardSettings)
    description: str = ""
    source: str = ""  # the file it was read from (set by the reader)

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)
