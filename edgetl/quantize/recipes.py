"""Quantization recipes: calibration/*.toml loaded into frozen Recipe objects."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from edgetl.core.datafiles import load_toml, shipped
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields
from edgetl.core.outputs import check_name
from edgetl.core.records.recipe import GuardSettings, Recipe

__all__ = ["GuardSettings", "Recipe", "list_recipes", "load_recipe", "parse_recipe"]

# Calibration methods each engine understands, by the name recipes use.
METHODS = {
    "nncf": ("minmax", "mean_minmax", "mean_quantile", "histogram"),
    "onnxruntime": ("minmax", "entropy", "percentile", "distribution"),
    # PyTorch 2 export quantization (the ExecuTorch targets' own quantizer)
    "pt2e": ("minmax",),
}
BIAS_CORRECTION = ("fast", "full", "none")


def parse_recipe(data: dict[str, Any], source: str) -> Recipe:
    """The recipe in `data` (read by the one record reader: unknown keys and wrong types are
    errors naming the key), with its engine, method and patterns checked."""
    if "source" in data:
        raise EdgetlError(f"{source}: unknown keys ['source']; the reader sets it")
    recipe = replace(read_fields(Recipe, data, Source(source)), source=source)
    check_name(recipe.name, "name", source)
    if recipe.engine not in METHODS:
        raise EdgetlError(
            f"{source}: engine {recipe.engine!r} is unknown; use {', '.join(METHODS)}"
        )
    if recipe.method not in METHODS[recipe.engine]:
        raise EdgetlError(
            f"{source}: method {recipe.method!r} is unknown for engine {recipe.engine}; "
            f"use {', '.join(METHODS[recipe.engine])}"
        )
    if recipe.bias_correction not in BIAS_CORRECTION:
        raise EdgetlError(
            f"{source}: bias_correction {recipe.bias_correction!r}; use {BIAS_CORRECTION}"
        )
    for pattern in recipe.float_layers:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise EdgetlError(f"{source}: float_layers pattern {pattern!r}: {exc}") from exc
    if recipe.samples < 1:
        raise EdgetlError(f"{source}: samples must be positive")
    return recipe


def load_recipe(name: str) -> Recipe:
    """A recipe by name (calibration/NAME.toml) or by path to a user's own .toml file."""
    data, source = load_toml(name, "edgetl.recipes", "--recipe", "calibration")
    return parse_recipe(data, source)


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in sorted(shipped("edgetl.recipes"))]
