"""The export stage: run -> ONNX -> backend artifact, checked for parity, with a manifest."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from edgetl import __version__
from edgetl.artifacts import refuse_overwrite, staged_dir, write_manifest
from edgetl.backends import get_backend
from edgetl.data import validation_arrays
from edgetl.errors import CheckFailed, EdgetlError
from edgetl.model import load_run
from edgetl.onnx_export import export_onnx
from edgetl.parity import ParityResult, check_parity
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


def default_out(run: Path, profile: TargetProfile, precision: str) -> Path:
    return run / "export" / f"{profile.name}-{precision}"


def export(opts: ExportOptions, console: Console) -> dict[str, Any]:
    """Export the run for one target; raises CheckFailed (nothing written) when parity fails."""
    run = load_run(opts.run)
    profile = load_target(opts.target)
    precision = profile.check_precision(opts.precision)
    backend = get_backend(profile.backend)
    if not backend.available():
        raise EdgetlError(f"target {profile.name}: runtime {profile.backend} is not installed here")
    out = opts.out or default_out(opts.run, profile, precision)
    refuse_overwrite(out, opts.force, "export")
    data = run.meta["data"]
    images, labels = validation_arrays(
        data["source"],
        data["val_fraction"],
        data["seed"],
        run.classes,
        run.preprocess,
        opts.parity_samples,
    )
    model = run.classifier()

    with staged_dir(out, opts.force, "export") as tmp:
        started = time.perf_counter()
        onnx_path = tmp / "model.onnx"
        export_onnx(model, run, onnx_path, profile.opset, opts.dynamic_batch)
        model_files = backend.compile(onnx_path, tmp, profile, precision)
        compile_s = time.perf_counter() - started
        runner = backend.load(tmp, {"model_files": model_files}, profile.threads)
        parity = check_parity(model, runner, images, labels, profile.parity[precision])
        print_parity(console, parity)
        if not parity.passed:
            raise CheckFailed(
                f"parity check failed for {profile.name}-{precision}: max |logit diff| "
                f"{parity.max_abs_diff:.2e} (limit {parity.tolerance.max_abs_diff:.0e}), top-1 "
                f"agreement {parity.agreement:.2%} (need {parity.tolerance.min_agreement:.0%}); "
                "no artifact written"
            )
        manifest = write_manifest(
            tmp,
            {
                "edgetl": __version__,
                "target": profile.name,
                "target_profile": profile.source,
                "backend": profile.backend,
                "device": profile.device,
                "precision": precision,
                "model_files": model_files,
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
            },
        )
    console.print(f"artifact: {out}")
    return manifest


def print_parity(console: Console, parity: ParityResult) -> None:
    verdict = "[green]pass[/]" if parity.passed else "[red]FAIL[/]"
    console.print(
        f"parity on {parity.n} val images: max |logit diff| {parity.max_abs_diff:.2e}, "
        f"top-1 agreement {parity.agreement:.2%}, top-1 torch {parity.reference_top1:.2%} / "
        f"artifact {parity.artifact_top1:.2%}: {verdict}"
    )
