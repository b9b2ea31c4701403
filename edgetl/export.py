"""The export stage: run -> ONNX -> backend artifact, checked for parity, with a manifest."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from edgetl import __version__
from edgetl.artifacts import refuse_overwrite, staged_dir, write_manifest
from edgetl.backends import get_backend
from edgetl.backends.base import run_all
from edgetl.data import split_val_arrays
from edgetl.errors import CheckFailed, EdgetlError
from edgetl.model import load_run
from edgetl.onnx_export import export_onnx
from edgetl.parity import ParityResult, check_parity, compare
from edgetl.quantize import Quantized, quantize_onnx
from edgetl.quantize.calibration import build_calibration
from edgetl.quantize.guard import Evaluation
from edgetl.quantize.recipes import Recipe, load_recipe
from edgetl.targets import TargetProfile, load_target
from edgetl.versions import versions


@dataclass
class ExportOptions:
    run: Path
    target: str
    precision: str | None = None
    out: Path | None = None
    dynamic_batch: bool = False
    parity_samples: int = 200
    force: bool = False
    # INT8 only
    recipe: str | None = None
    calib_data: Path | None = None
    calib_samples: int | None = None
    max_accuracy_drop: float = 1.0


GUARD_IMAGES = 1000  # validation images the INT8 accuracy guard measures (at most)


def default_out(run: Path, profile: TargetProfile, precision: str) -> Path:
    return run / "export" / f"{profile.name}-{precision}"


def export(opts: ExportOptions, console: Console) -> dict[str, Any]:
    """Export the run for one target; raises CheckFailed (nothing written) when a check fails."""
    run = load_run(opts.run)
    profile = load_target(opts.target)
    precision = profile.check_precision(opts.precision)
    recipe = _check_int8_options(opts, profile, precision)
    backend = get_backend(profile.backend)
    if not backend.available():
        raise EdgetlError(f"target {profile.name}: runtime {profile.backend} is not installed here")
    backend.check_device(profile.device)
    out = opts.out or default_out(opts.run, profile, precision)
    refuse_overwrite(out, opts.force, "export")
    splits = run.splits()  # read once: validation, calibration and head refit share it
    images, labels = split_val_arrays(
        splits,
        run.classes,
        run.preprocess,
        max(opts.parity_samples, GUARD_IMAGES) if recipe else opts.parity_samples,
    )
    calib = None
    if recipe is not None:
        calib = build_calibration(
            run,
            splits,
            opts.calib_data,
            opts.calib_samples or recipe.samples,
            recipe.samples,
            run.meta["train"]["seed"],
            console,
        )
    model = run.classifier()

    with (
        staged_dir(out, opts.force, "export") as tmp,
        tempfile.TemporaryDirectory(prefix="edgetl-export-") as scratch,
    ):
        work = Path(scratch)
        started = time.perf_counter()
        onnx_path = work / "model.onnx"
        export_onnx(model, run, onnx_path, profile.opset, opts.dynamic_batch)
        quantized = None
        if recipe is not None and calib is not None:
            evaluation = Evaluation(
                images, labels, lambda candidate: backend.load_onnx(candidate, profile)
            )
            quantized = quantize_onnx(
                onnx_path,
                work,
                run,
                recipe,
                calib,
                splits.train,
                evaluation,
                opts.max_accuracy_drop,
                console,
            )
            onnx_path = quantized.path
        model_files = backend.compile(onnx_path, tmp, profile, precision)
        compile_s = time.perf_counter() - started
        runtime = {
            "model_files": model_files,
            "device": profile.device,
            "runtime_options": profile.options,
        }
        runner = backend.load(tmp, runtime, profile.threads)
        if quantized is None:
            parity = check_parity(model, runner, images, labels, profile.parity[precision])
        else:
            # INT8 differs from PyTorch by design (the guard judged that); here the artifact
            # must match the INT8 model the guard measured.
            parity = compare(
                quantized.logits, run_all(runner, images), labels, profile.parity[precision]
            )
        print_parity(console, parity, "INT8 model the guard measured" if quantized else "torch")
        if quantized is not None:
            _check_artifact_budget(quantized, parity, profile, opts.max_accuracy_drop)
        if not parity.passed:
            raise CheckFailed(
                f"parity check failed for {profile.name}-{precision}: max |logit diff| "
                f"{parity.max_abs_diff:.2e} (limit {parity.tolerance.max_abs_diff:.0e}), top-1 "
                f"agreement {parity.agreement:.2%} (need {parity.tolerance.min_agreement:.0%}); "
                "no artifact written"
            )
        fields = {
            "edgetl": __version__,
            "target": profile.name,
            "target_profile": profile.source,
            "backend": profile.backend,
            "device": profile.device,
            "precision": precision,
            "model_files": model_files,
            "runtime_options": profile.options,
            "input": {
                "name": "images",
                "shape": [
                    None if opts.dynamic_batch else 1,
                    3,
                    run.preprocess.size,
                    run.preprocess.size,
                ],
            },
            "run": {
                "path": str(Path(opts.run).resolve()),
                "backbone": run.meta["backbone"],
                "data": run.meta["data"],
                "seed": run.meta["train"]["seed"],
                "val_top1": run.meta["metrics"]["val_top1"],
            },
            "preprocess": run.preprocess.to_dict(),
            "classes": run.classes,
            "parity": parity.to_dict(),
            "compile_s": round(compile_s, 3),
            "versions": {**versions(), "runtime": backend.runtime_version()},
        }
        if quantized is not None:
            fields["quantization"] = {
                **quantized.describe(),
                "artifact_top1": parity.artifact_top1,
            }
        manifest = write_manifest(tmp, fields)
    console.print(f"artifact: {out}")
    return manifest


def _check_artifact_budget(
    quantized: Quantized, parity: ParityResult, profile: TargetProfile, budget: float
) -> None:
    """The compiled artifact, loaded as a user will load it, must hold the budget too."""
    drop = 100 * (quantized.report.fp32_top1 - parity.artifact_top1)
    if drop > budget:
        raise CheckFailed(
            f"on {profile.backend} ({profile.device}) the INT8 artifact's top-1 is "
            f"{parity.artifact_top1:.2%} against FP32 {quantized.report.fp32_top1:.2%}: a drop of "
            f"{drop:.2f} pts > --max-accuracy-drop {budget:.2f}; no artifact written"
        )


def _check_int8_options(
    opts: ExportOptions, profile: TargetProfile, precision: str
) -> Recipe | None:
    """The INT8 recipe, or None for other precisions; INT8 options without INT8 are an error."""
    if precision != "int8":
        given = [
            name
            for name, value in (
                ("--recipe", opts.recipe),
                ("--calib-data", opts.calib_data),
                ("--calib-samples", opts.calib_samples),
            )
            if value is not None
        ]
        if given:
            raise EdgetlError(f"{', '.join(given)}: only used with --precision int8")
        return None
    if not 0 <= opts.max_accuracy_drop <= 100:
        raise EdgetlError(
            f"--max-accuracy-drop {opts.max_accuracy_drop}: give points of top-1 between 0 and 100"
        )
    if opts.calib_data is not None and not opts.calib_data.exists():
        raise EdgetlError(f"--calib-data {opts.calib_data}: no such directory or .npy file")
    return load_recipe(opts.recipe or profile.recipe)


def print_parity(console: Console, parity: ParityResult, reference: str = "torch") -> None:
    verdict = "[green]pass[/]" if parity.passed else "[red]FAIL[/]"
    console.print(
        f"parity vs {reference} on {parity.n} val images: max |logit diff| "
        f"{parity.max_abs_diff:.2e}, top-1 agreement {parity.agreement:.2%}, top-1 "
        f"reference {parity.reference_top1:.2%} / "
        f"artifact {parity.artifact_top1:.2%}: {verdict}"
    )
