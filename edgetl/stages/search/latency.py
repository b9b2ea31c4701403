"""Latency of an architecture on the target's runtime, before any weight is trained: the
backbone with a head of random weights (latency depends on the shapes, not the values),
exported to ONNX, INT8-quantized where asked (calibrated on a few train images), loaded by
the target's runtime here, timed at batch 1."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from edgetl.backends.placement import resolve
from edgetl.core.constants import INPUT_NAME, OUTPUT_NAME
from edgetl.core.targets import TargetProfile
from edgetl.core.timing import measure, summarize
from edgetl.quantize.engines import ENGINES, float_node_names, prepare
from edgetl.quantize.recipes import load_recipe
from edgetl.stages.search.space import Candidate
from edgetl.train.backbones import Backbone
from edgetl.train.model import Classifier, Head


@dataclass(frozen=True)
class ArchLatency:
    p50_ms: float
    p90_ms: float
    size_mb: float
    runtime: str  # what timed it: the target's runtime, or "onnxruntime (proxy for ...)"


def measure_arch(
    candidate: Candidate,
    backbone: Backbone,
    classes: int,
    calibration: np.ndarray,
    profile: TargetProfile,
    iterations: int,
) -> ArchLatency:
    """p50/p90 of `candidate`'s architecture at batch 1 on the target's runtime here."""
    placement = resolve(profile, f"target {profile.name}", export=True)
    measuring = replace(profile, device=placement.device)
    torch.manual_seed(0)
    model = Classifier(backbone.model, Head(backbone.num_features, classes, candidate.hidden))
    with tempfile.TemporaryDirectory(prefix="edgetl-search-") as tmp:
        path = Path(tmp) / "model.onnx"
        _to_onnx(model.eval(), candidate.size, path, profile.opset)
        graph = onnx.load(str(path))
        if candidate.precision == "int8":
            prepared = prepare(path, Path(tmp) / "prepared.onnx")
            recipe = load_recipe(profile.recipe)
            floats = float_node_names(prepared, recipe)
            graph = ENGINES[recipe.engine](prepared, calibration, recipe, floats)
            graph = placement.backend.rewrite_int8(graph)
        size_mb = len(graph.SerializeToString()) / 1e6
        runner = placement.runtime.load_onnx(graph, measuring)
        single = calibration[:1]
        latency = summarize(measure(lambda: runner.run(single), iterations, warmup=10))
    runtime = placement.runtime.name
    if placement.proxy is not None:
        runtime += f" (proxy for {placement.backend.name})"
    return ArchLatency(round(latency.p50, 4), round(latency.p90, 4), round(size_mb, 3), runtime)


def _to_onnx(model: torch.nn.Module, size: int, path: Path, opset: int) -> None:
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 3, size, size),), str(path), input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], opset_version=opset, do_constant_folding=True,
            dynamo=False,
        )  # fmt: skip
