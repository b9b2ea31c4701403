"""The export stage: run -> ONNX -> backend artifact, checked for parity, with a manifest.

Every artifact stands alone: model files, manifest.json and a reference set (test images
after resize/crop, labels, FP32 logits), so it can be checked and benchmarked on a device
that has neither the dataset nor the run directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from edgetl.backends import Backend, Runner, RuntimeSpec, get_backend, run_all
from edgetl.core.dataset import ImageSet, Splits
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.files import staged_dir
from edgetl.core.metrics import drop_pts, top1, within_budget
from edgetl.core.outputs import check_not_input, claim, clean_scratch, scratch_dir
from edgetl.core.parity import ParityResult, compare
from edgetl.core.records import MANIFEST_FILE, Manifest, ReferenceInfo, RunRef
from edgetl.core.reference import REFERENCE_FILE, ReferenceSet, seen_digests
from edgetl.core.targets import Parity, TargetProfile, load_target
from edgetl.core.versions import versions
from edgetl.quantize import Quantized, quantize_onnx
from edgetl.quantize.calibration import MIN_SAMPLES, build_calibration
from edgetl.quantize.guard import Evaluation
from edgetl.quantize.recipes import Recipe, load_recipe
from edgetl.train.model import Classifier, Run, load_run, torch_logits
from edgetl.train.onnx_export import export_onnx

GUARD_IMAGES = 1000  # validation images the INT8 accuracy guard measures (at most)
TEST_IMAGES = 2000  # test images the manifest's accuracy is measured on (at most)
FP32_TOLERANCE = Parity(max_abs_diff=1e-3, min_agreement=1.0)


@dataclass
class ExportOptions:
    run: Path
    target: str
    precision: str | None = None
    out: Path | None = None
    dynamic_batch: bool = False
    parity_samples: int = 200
    reference_samples: int = 200
    archive: bool = False  # also write DIR.tar.gz
    force: bool = False
    # INT8 only
    recipe: str | None = None
    calib_data: Path | None = None
    calib_samples: int | None = None
    max_accuracy_drop: float = 1.0
    sign: Path | None = None  # ed25519 private key: the artifact is signed with it


def default_out(run: Path, profile: TargetProfile, precision: str) -> Path:
    return run / "export" / f"{profile.name}-{precision}"


@dataclass
class EvalData:
    """The images export measures on: val (checks, guard decisions) and test (reported)."""

    val: np.ndarray
    val_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    test_fp32_top1: float  # the PyTorch model on the test images
    reference: ReferenceSet


def export(opts: ExportOptions, console: Console) -> Manifest:
    """Export the run for one target; raises CheckFailed (nothing written) when a check fails."""
    _check_counts(opts)
    run = load_run(opts.run)
    profile = load_target(opts.target)
    if profile.alias is not None:
        console.print(f"target {profile.alias} is an alias: exporting for {profile.name}")
    precision = profile.check_precision(opts.precision)
    recipe = _check_int8_options(opts, profile, precision)
    backend, measure, measuring = _backends(profile, console)
    out = opts.out or default_out(opts.run, profile, precision)
    signing_key = None
    if opts.sign is not None:
        from edgetl.core.signing import load_private_key

        signing_key = load_private_key(opts.sign)  # a bad key is exit 2 before the work
    check_not_input(
        out,
        {
            "the run": opts.run,
            "--calib-data": opts.calib_data,
            "the --target file": _user_file(opts.target),
            "the --recipe file": _user_file(opts.recipe),
            "the --sign key": opts.sign,
        },
        allowed_inside={"the run": opts.run / "export"},
    )
    notes: list[str] = []
    with claim(out, opts.force, "export", MANIFEST_FILE, notes):
        notes += [
            f"removed {path}, left by an export that was killed" for path in clean_scratch("export")
        ]
        for note in notes:
            console.print(note)
        manifest = _export(
            opts,
            run,
            (profile, measuring),
            precision,
            recipe,
            (backend, measure),
            out,
            signing_key,
            console,
        )
        _replace_archive(out, opts.archive, console)
    return manifest


def _user_file(name: str | None) -> Path | None:
    return Path(name) if name is not None and name.endswith(".toml") else None


def _replace_archive(out: Path, write: bool, console: Console) -> None:
    """OUT.tar.gz beside the artifact always holds this artifact: rewritten with --archive,
    else removed when it was left from the one just replaced."""
    stale = out.parent / f"{out.name}.tar.gz"
    if write:
        console.print(f"archive: {archive(out)}")
    elif stale.is_file():
        stale.unlink()
        console.print(f"removed {stale}: it held the artifact this export replaced")


def _export(
    opts: ExportOptions,
    run: Run,
    profiles: tuple[TargetProfile, TargetProfile],
    precision: str,
    recipe: Recipe | None,
    backends: tuple[Backend, Backend],
    out: Path,
    signing_key: Any,
    console: Console,
) -> Manifest:
    """`profiles`: the target's, and the one it is measured with here (another device of
    the same runtime when the target's is absent); `backends`: compiles, measures."""
    profile, measuring = profiles
    backend, measure = backends
    splits = run.splits()  # read once: validation, calibration and head refit share it
    calib = None
    if recipe is not None:
        count = recipe.samples if opts.calib_samples is None else opts.calib_samples
        calib = build_calibration(run, splits, opts.calib_data, count, recipe.samples, console)
    model = run.classifier()
    data = _eval_data(run, splits, model, opts, recipe is not None, console)

    with (
        staged_dir(out, opts.force, "export", MANIFEST_FILE) as tmp,
        scratch_dir("export") as scratch,
    ):
        work = Path(scratch)
        started = time.perf_counter()
        onnx_path = work / "model.onnx"
        export_onnx(model, run, onnx_path, profile.opset, opts.dynamic_batch)
        val_torch = torch_logits(model, data.val)
        quantized = None
        if recipe is not None and calib is not None:
            evaluation = Evaluation(
                data.val,
                data.val_labels,
                load=lambda candidate: measure.load_onnx(candidate, measuring),
                rewrite=backend.rewrite_int8,
                rank=lambda candidate: get_backend("onnxruntime").load_onnx(candidate, profile),
                seed=run.seed,
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
                torch_logits=val_torch,
                fp32_tolerance=profile.parity.get("fp32", FP32_TOLERANCE),
                test=(data.test, data.test_labels),
                speed_check=profile.host_proxy is None,
            )
            onnx_path = quantized.path
        fp32_onnx = quantized.prepared if quantized is not None else None
        model_files = backend.compile(onnx_path, tmp, profile, precision, fp32_onnx=fp32_onnx)
        compile_s = time.perf_counter() - started
        runner = _artifact_runner(backend, measure, measuring, tmp, model_files, onnx_path)
        reference = val_torch if quantized is None else quantized.logits
        parity = compare(
            reference, run_all(runner, data.val), data.val_labels, profile.parity[precision]
        )
        print_parity(console, parity, "INT8 model the guard measured" if quantized else "torch")
        if quantized is not None:
            _check_artifact_budget(quantized, parity, profile, opts.max_accuracy_drop)
        if not parity.passed:
            raise CheckFailed(
                f"parity check failed for {profile.name}-{precision}: {parity.shortfall()}; "
                "no artifact written"
            )
        extra = _host_checks(backend, measure, measuring, tmp, precision, val_torch, data, console)
        accuracy = _accuracy(measure, measuring.device, runner, data, parity)
        reference_images = run.preprocess.normalize(data.reference.images)
        data.reference.artifact_logits = run_all(runner, reference_images).astype(np.float32)
        data.reference.save(tmp / REFERENCE_FILE)
        manifest = Manifest(
            target=profile.name,
            target_profile=profile.source,
            backend=profile.backend,
            device=profile.device,
            precision=precision,
            model_files=model_files,
            runtime_options=profile.options,
            input_shape=[
                None if opts.dynamic_batch else 1,
                3,
                run.preprocess.size,
                run.preprocess.size,
            ],
            run=RunRef(
                path=str(Path(opts.run).resolve()),
                sha256=run.sha256(),
                backbone=run.info.backbone.name,
                data=run.info.data,
            ),
            preprocess=run.preprocess,
            classes=run.classes,
            parity={**parity.to_dict(), **({"host_checks": extra} if extra else {})},
            accuracy=accuracy,
            reference=ReferenceInfo(REFERENCE_FILE, len(data.reference), "test", run.seed),
            versions={**versions(), "runtime": measure.runtime_version()},
            threads=profile.threads,
            host_proxy=profile.host_proxy,
            compile_s=round(compile_s, 3),
            quantization=None
            if quantized is None
            else {**quantized.describe(), "artifact_top1": parity.artifact_top1},
        )
        manifest.write(tmp)
        if signing_key is not None:
            from edgetl.core.signing import sign

            console.print(f"signed with {sign(tmp, manifest.digest, signing_key)}")
    console.print(
        f"test top-1 ({accuracy['test']['n']} images no choice was made on): artifact "
        f"{accuracy['test']['top1']:.2%}, FP32 PyTorch {accuracy['test']['fp32_top1']:.2%}"
    )
    console.print(f"artifact: {out}")
    return manifest


def archive(directory: Path) -> Path:
    """DIR.tar.gz beside the directory, written atomically."""
    import io
    import tarfile

    from edgetl.core.files import atomic_write_bytes

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    path = directory.parent / f"{directory.name}.tar.gz"
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _check_counts(opts: ExportOptions) -> None:
    for option, value in (
        ("--parity-samples", opts.parity_samples),
        ("--reference-samples", opts.reference_samples),
    ):
        if value < 1:
            raise EdgetlError(f"{option} {value}: must be at least 1")


def _backends(profile: TargetProfile, console: Console) -> tuple[Backend, Backend, TargetProfile]:
    """The target's backend (compiles), the one that measures on this host, and the profile
    it measures with: the target's own, or (a runtime whose compiled model is
    device-independent, e.g. OpenVINO IR) the same runtime on a device this host has."""
    backend = get_backend(profile.backend)
    measure = get_backend(profile.measured_on)
    if not measure.available():
        raise EdgetlError(
            f"target {profile.name}: runtime {measure.name} is not installed here; install it "
            "or export for another target (see `edgetl targets`)"
        )
    if profile.host_proxy is not None:
        return backend, measure, profile
    try:
        backend.check_device(profile.device)
    except EdgetlError:
        if backend.host_device is None:
            raise
        console.print(
            f"{profile.device} is not on this machine: the {backend.name} model does not depend "
            f"on the device, so it is exported here and measured on {backend.host_device}; "
            f"it is compiled for {profile.device} where it runs"
        )
        return backend, measure, replace(profile, device=backend.host_device)
    return backend, measure, profile


def _eval_data(
    run: Run,
    splits: Splits,
    model: Classifier,
    opts: ExportOptions,
    int8: bool,
    console: Console,
) -> EvalData:
    val = splits.val.sample(
        max(opts.parity_samples, GUARD_IMAGES) if int8 else opts.parity_samples, run.seed
    )
    test = splits.test.sample(TEST_IMAGES, run.seed)
    reference = reference_set(splits.test, run, model, opts.reference_samples)
    reference.seen = seen_digests(splits.train.digests, splits.val.digests)
    console.print(
        f"export measures on {len(val)} val images (checks{', INT8 guard' if int8 else ''}) and "
        f"{len(test)} test images (reported only); reference set: {len(reference)} test images"
    )
    test_images = test.arrays(run.preprocess)
    test_fp32 = torch_logits(model, test_images)
    return EvalData(
        val.arrays(run.preprocess),
        val.labels,
        test_images,
        test.labels,
        top1(test_fp32, test.labels),
        reference,
    )


def reference_set(test: ImageSet, run: Run, model: Classifier, count: int) -> ReferenceSet:
    """A stratified sample of the test split as uint8 crops, with labels and FP32 logits."""
    picked = test.sample(count, run.seed)
    crops = picked.crops(run.preprocess)
    logits = torch_logits(model, run.preprocess.normalize(crops))
    return ReferenceSet(crops, picked.labels, logits.astype(np.float32), list(picked.keys))


def _artifact_runner(
    backend: Backend,
    measure: Backend,
    profile: TargetProfile,
    model_dir: Path,
    model_files: list[str],
    onnx_path: Path,
) -> Runner:
    """The written artifact on its runtime, or its ONNX on the host proxy the profile names."""
    if profile.host_proxy is None:
        spec = RuntimeSpec(model_files, profile.device, profile.options, profile.threads)
        return backend.load(model_dir, spec)
    import onnx

    return measure.load_onnx(onnx.load(str(onnx_path)), profile)


def _host_checks(
    backend: Backend,
    measure: Backend,
    measuring: TargetProfile,
    out_dir: Path,
    precision: str,
    reference: np.ndarray,
    data: EvalData,
    console: Console,
) -> dict[str, Any]:
    """The artifact's other graphs (e.g. TensorRT 11's FP16-typed ONNX) against PyTorch's
    FP32 logits on the host proxy, each within the profile's tolerance for it."""
    import onnx

    found: dict[str, Any] = {}
    for what, path, key in backend.host_checks(out_dir, precision):
        tolerance = measuring.parity.get(key)
        if tolerance is None:
            raise EdgetlError(f"{measuring.source}: [parity] has no {key} tolerance for {what}")
        runner = measure.load_onnx(onnx.load(str(path)), measuring)
        result = compare(reference, run_all(runner, data.val), data.val_labels, tolerance)
        print_parity(console, result, f"torch ({what}, {path.name})")
        if not result.passed:
            raise CheckFailed(f"{what} ({path.name}): {result.shortfall()}; no artifact written")
        found[path.name] = result.to_dict()
    return found


def _accuracy(
    measure: Backend, device: str, runner: Runner, data: EvalData, parity: ParityResult
) -> dict[str, Any]:
    test_logits = run_all(runner, data.test)
    return {
        "measured_on": measure.name,
        "measured_device": device,
        "val": {
            "n": parity.n,
            "fp32_top1": parity.reference_top1,
            "top1": parity.artifact_top1,
        },
        "test": {
            "n": int(len(data.test_labels)),
            "top1": top1(test_logits, data.test_labels),
            "fp32_top1": data.test_fp32_top1,
        },
    }


def _check_artifact_budget(
    quantized: Quantized, parity: ParityResult, profile: TargetProfile, budget: float
) -> None:
    """The compiled artifact, loaded as a user will load it, must hold the budget too."""
    drop = drop_pts(quantized.report.fp32_top1, parity.artifact_top1)
    if not within_budget(drop, budget):
        raise CheckFailed(
            f"on {profile.backend} ({profile.device}) the INT8 artifact's val top-1 is "
            f"{parity.artifact_top1:.2%} against FP32 {quantized.report.fp32_top1:.2%}: a drop "
            f"of {drop:.2f} pts > --max-accuracy-drop {budget:.2f}; no artifact written"
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
    if opts.calib_samples is not None and opts.calib_samples < MIN_SAMPLES:
        raise EdgetlError(f"--calib-samples {opts.calib_samples}: need at least {MIN_SAMPLES}")
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
