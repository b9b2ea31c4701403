"""Quantization recipes: calibration/*.toml loaded into frozen Recipe objects."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edgetl.core.datafiles import load_toml, shipped
from edgetl.core.errors import EdgetlError
from edgetl.core.outputs import check_name

# Calibration methods each engine understands, by the name recipes use.
METHODS = {
    "nncf": ("minmax", "mean_minmax", "mean_quantile", "histogram"),
    "onnxruntime": ("minmax", "entropy", "percentile", "distribution"),
}
BIAS_CORRECTION = ("fast", "full", "none")


@dataclass(frozen=True)
class GuardSettings:
    head_refit: bool = True
    max_float_layers: int = 16
    ranking_samples: int = 128


@dataclass(frozen=True)
class Recipe:
    name: str
    engine: str
    method: str
    symmetric_activations: bool
    per_channel_weights: bool
    samples: int
    bias_correction: str
    float_layers: tuple[str, ...]
    float_ops: tuple[str, ...]
    guard: GuardSettings = field(default_factory=GuardSettings)
    description: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPE_KEYS = {
    "name",
    "description",
    "engine",
    "method",
    "symmetric_activations",
    "per_channel_weights",
    "samples",
    "bias_correction",
    "float_layers",
    "float_ops",
    "guard",
}
GUARD_KEYS = {"head_refit", "max_float_layers", "ranking_samples"}


def parse_recipe(data: dict[str, Any], source: str) -> Recipe:
    unknown = sorted(set(data) - RECIPE_KEYS) + sorted(
        f"guard.{k}" for k in set(data.get("guard", {})) - GUARD_KEYS
    )
    if unknown:
        raise EdgetlError(f"{source}: unknown keys {unknown}; see calibration/nncf-mixed.toml")
    try:
        engine = str(data["engine"])
        method = str(data["method"])
        if engine not in METHODS:
            raise EdgetlError(f"{source}: engine {engine!r} is unknown; use {', '.join(METHODS)}")
        if method not in METHODS[engine]:
            raise EdgetlError(
                f"{source}: method {method!r} is unknown for engine {engine}; "
                f"use {', '.join(METHODS[engine])}"
            )
        bias = str(data.get("bias_correction", "fast"))
        if bias not in BIAS_CORRECTION:
            raise EdgetlError(f"{source}: bias_correction {bias!r}; use {BIAS_CORRECTION}")
        patterns = tuple(str(p) for p in data.get("float_layers", []))
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise EdgetlError(f"{source}: float_layers pattern {pattern!r}: {exc}") from exc
        guard = data.get("guard", {})
        samples = int(data.get("samples", 300))
        if samples < 1:
            raise EdgetlError(f"{source}: samples must be positive")
        return Recipe(
            name=check_name(str(data["name"]), "name", source),
            engine=engine,
            method=method,
            symmetric_activations=bool(data.get("symmetric_activations", False)),
            per_channel_weights=bool(data.get("per_channel_weights", True)),
            samples=samples,
            bias_correction=bias,
            float_layers=patterns,
            float_ops=tuple(str(op) for op in data.get("float_ops", [])),
            guard=GuardSettings(
                head_refit=bool(guard.get("head_refit", True)),
                max_float_layers=int(guard.get("max_float_layers", 16)),
                ranking_samples=int(guard.get("ranking_samples", 128)),
            ),
            description=str(data.get("description", "")),
            source=source,
        )
    except KeyError as exc:
        raise EdgetlError(f"{source}: missing key {exc}; see calibration/nncf-mixed.toml") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise EdgetlError(f"{source}: a value has the wrong type ({exc})") from exc


def load_recipe(name: str) -> Recipe:
    """A recipe by name (calibration/NAME.toml) or by path to a user's own .toml file."""
    data, source = load_toml(name, "edgetl.recipes", "--recipe", "calibration")
    return parse_recipe(data, source)


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in sorted(shipped("edgetl.recipes"))]
