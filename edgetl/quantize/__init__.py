"""INT8 quantization: calibration sets, recipes, engines (NNCF, ONNX Runtime), accuracy guard."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from rich.console import Console

from edgetl.backends.base import Runner
from edgetl.bench.timing import interleaved_p50
from edgetl.data import ImageSet
from edgetl.model import Run
from edgetl.quantize.calibration import CalibrationSet
from edgetl.quantize.engines import prepare
from edgetl.quantize.guard import Evaluation, GuardReport, quantize_with_guard
from edgetl.quantize.recipes import Recipe


@dataclass
class Quantized:
    path: Path  # the INT8 ONNX model
    logits: np.ndarray  # its logits on the evaluation images, on the target's runtime
    report: GuardReport
    speed: dict[str, float]  # batch-1 p50 of FP32 and INT8 on this machine, side by side
    recipe: Recipe
    calib: CalibrationSet

    def describe(self) -> dict[str, Any]:
        """The manifest's `quantization` block."""
        return {
            "recipe": self.recipe.to_dict(),
            "calibration": {**self.calib.describe(), "time_s": round(self.report.quantize_s, 2)},
            **self.report.to_dict(),
            "speed_here": self.speed,
        }


def quantize_onnx(
    fp32_path: Path,
    work: Path,
    run: Run,
    recipe: Recipe,
    calib: CalibrationSet,
    train: ImageSet,
    evaluation: Evaluation,
    budget_pts: float,
    console: Console,
) -> Quantized:
    """Quantize the exported FP32 model under the accuracy guard; the result lands in `work`.

    `evaluation` runs candidates with the target's runtime: the guard measures accuracy where
    the model will run (integer kernels round differently between runtimes). `train` is the
    run's training split, for re-fitting the head.
    """
    prepared = prepare(fp32_path, work / "prepared.onnx")
    evaluation.measure_fp32(prepared)
    model, report = quantize_with_guard(
        prepared, calib, recipe, run, train, evaluation, budget_pts, console
    )
    _copy_metadata(onnx.load(str(fp32_path)), model)
    path = work / "model.int8.onnx"
    onnx.save(model, str(path))
    # The guard's last measured model is the one returned: reuse its runner and logits.
    speed = compare_speed(evaluation.fp32_runner, evaluation.last_runner, evaluation.images[:1])
    if speed["ratio"] >= 1.0:
        console.print(
            f"[yellow]warning:[/] on this machine the INT8 model is not faster than FP32 "
            f"({speed['int8_p50_ms']:.2f} vs {speed['fp32_p50_ms']:.2f} ms batch-1 p50) with "
            f"{len(report.chosen.float_layers)} layers kept float; another --recipe (the "
            "default nncf-mixed needs fewer) may do better"
        )
    return Quantized(path, evaluation.last_logits, report, speed, recipe, calib)


def compare_speed(fp32: Runner, int8: Runner, single: np.ndarray) -> dict[str, float]:
    """A quick side-by-side p50: enough to warn when INT8 does not pay off here."""
    p50 = interleaved_p50({"fp32": lambda: fp32.run(single), "int8": lambda: int8.run(single)}, 100)
    return {
        "fp32_p50_ms": round(p50["fp32"], 4),
        "int8_p50_ms": round(p50["int8"], 4),
        "ratio": round(p50["int8"] / p50["fp32"], 3),
    }


def _copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    del target.metadata_props[:]
    for prop in source.metadata_props:
        target.metadata_props.add(key=prop.key, value=prop.value)
    target.metadata_props.add(key="edgetl.precision", value=json.dumps("int8"))
