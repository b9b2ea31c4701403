"""INT8 quantization: calibration sets, recipes, engines (NNCF, ONNX Runtime), accuracy guard."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from rich.console import Console

from edgetl.backends import Runner, run_all
from edgetl.core.dataset import ImageSet
from edgetl.core.errors import CheckFailed
from edgetl.core.metrics import agreement, drop_pts, top1
from edgetl.core.parity import compare
from edgetl.core.targets import Parity
from edgetl.core.timing import interleaved_p50
from edgetl.quantize.calibration import CalibrationSet
from edgetl.quantize.engines import prepare
from edgetl.quantize.guard import Evaluation, GuardReport, quantize_with_guard
from edgetl.quantize.recipes import Recipe
from edgetl.train.model import Run


@dataclass
class Quantized:
    path: Path  # the INT8 ONNX model
    prepared: Path  # the FP32 graph it was quantized from (shape-inferred, folded)
    logits: np.ndarray  # its logits on the evaluation images, on the target's runtime
    report: GuardReport
    # Batch-1 p50 of FP32 and INT8 on this machine, side by side; empty when a host proxy
    # measured (its speed says nothing about the target's runtime).
    speed: dict[str, float]
    recipe: Recipe
    calib: CalibrationSet
    test: dict[str, Any]  # FP32 and INT8 on the test split: reported, never chosen on

    def describe(self) -> dict[str, Any]:
        """The manifest's `quantization` block (the guard's numbers are on val)."""
        return {
            "recipe": self.recipe.to_dict(),
            "calibration": {**self.calib.describe(), "time_s": round(self.report.quantize_s, 2)},
            **self.report.to_dict(),
            "test": self.test,
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
    *,
    torch_logits: np.ndarray,
    fp32_tolerance: Parity,
    test: tuple[np.ndarray, np.ndarray],
    speed_check: bool = True,
) -> Quantized:
    """Quantize the exported FP32 model under the accuracy guard; the result lands in `work`.

    Parameters:
        fp32_path: the FP32 ONNX export of the run's classifier.
        work: scratch directory for the prepared and quantized graphs.
        recipe: engine, ranges and guard settings (calibration/*.toml).
        calib: the calibration images, preprocessed.
        train: the run's training split, for re-fitting the head.
        evaluation: the validation images and the runtimes that measure candidates: the
            guard measures accuracy where the model will run (integer kernels round
            differently between runtimes). Every guard decision is made on these images.
        budget_pts: most top-1 points INT8 may lose against FP32 on validation.
        torch_logits: PyTorch's logits on the evaluation images: the FP32 ONNX must match
            them within `fp32_tolerance` before anything is quantized.
        test: test images and labels; FP32 and the chosen INT8 are measured on them for the
            report only.
        speed_check: time FP32 against INT8 here and warn when INT8 is not faster; off when
            the evaluation runs on a host proxy rather than the target's runtime.
    """
    prepared_path = work / "prepared.onnx"
    prepared = prepare(fp32_path, prepared_path)
    evaluation.measure_fp32(prepared)
    fp32_check = compare(torch_logits, evaluation.fp32_logits, evaluation.labels, fp32_tolerance)
    if not fp32_check.passed:
        raise CheckFailed(
            f"the FP32 ONNX model differs from PyTorch before quantization: max |logit diff| "
            f"{fp32_check.max_abs_diff:.2e} (limit {fp32_tolerance.max_abs_diff:.0e}), top-1 "
            f"agreement {fp32_check.agreement:.2%}; no artifact written"
        )
    model, report = quantize_with_guard(
        prepared, calib, recipe, run, train, evaluation, budget_pts, console
    )
    _copy_metadata(onnx.load(str(fp32_path)), model)
    path = work / "model.int8.onnx"
    onnx.save(model, str(path))
    # The guard's last measured model is the one returned: reuse its runner and logits.
    speed: dict[str, float] = {}
    if speed_check:
        speed = compare_speed(evaluation.fp32_runner, evaluation.last_runner, evaluation.images[:1])
    if speed and speed["ratio"] >= 1.0:
        console.print(
            f"[yellow]warning:[/] on this machine the INT8 model is not faster than FP32 "
            f"({speed['int8_p50_ms']:.2f} vs {speed['fp32_p50_ms']:.2f} ms batch-1 p50) with "
            f"{len(report.chosen.float_layers)} layers kept float; another --recipe (the "
            "default nncf-mixed needs fewer) may do better"
        )
    test_result = measure_pair(evaluation.fp32_runner, evaluation.last_runner, *test)
    return Quantized(
        path, prepared_path, evaluation.last_logits, report, speed, recipe, calib, test_result
    )


def measure_pair(
    fp32: Runner, int8: Runner, images: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """FP32 and INT8 top-1 on the same images, the drop between them and their agreement."""
    fp32_logits, int8_logits = run_all(fp32, images), run_all(int8, images)
    fp32_top1 = top1(fp32_logits, labels)
    int8_top1 = top1(int8_logits, labels)
    return {
        "n": int(len(labels)),
        "fp32_top1": fp32_top1,
        "int8_top1": int8_top1,
        "drop_pts": round(drop_pts(fp32_top1, int8_top1), 4),
        "agreement": agreement(int8_logits, fp32_logits),
    }


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
