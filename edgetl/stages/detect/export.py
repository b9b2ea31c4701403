"""`edgetl export RUN` of a detection run: one ONNX graph from letterboxed image to boxes and
per-class scores (separate outputs, decode in float), checked against PyTorch, quantized
under the mAP guard (guard.py) for INT8, compiled for the target, checked again as compiled,
and written whole with its manifest (core/records/detector.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edgetl.backends import Runner
from edgetl.backends.placement import Placement, resolve
from edgetl.backends.profiles import load_target
from edgetl.core.artifact.detection_reference import DETECTION_REFERENCE_FILE
from edgetl.core.constants import INPUT_NAME
from edgetl.core.data.detection_splits import DetectionSplits
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.events import say
from edgetl.core.files import sha256_file, staged_dir
from edgetl.core.outputs import check_not_input, claim, scratch_dir
from edgetl.core.records import RUN_FILE, Sensitivity
from edgetl.core.records.detector import (
    GRAPH_OUTPUTS,
    NMS_IN_GRAPH,
    OUTPUTS,
    DetectorManifest,
    DetectorQuantization,
    DetectorRunRef,
)
from edgetl.core.records.manifest import MANIFEST_FILE
from edgetl.core.records.sensitivity import SensitivityReport
from edgetl.core.targets import TargetProfile
from edgetl.core.ui import heartbeat
from edgetl.core.versions import versions
from edgetl.quantize.calibration import MIN_SAMPLES, CalibrationSet
from edgetl.quantize.guard.candidates import Candidates
from edgetl.quantize.guard.ranker import ranking_loader
from edgetl.quantize.guard.report import sensitivity_report
from edgetl.quantize.int8 import compare_speed, payoff_line
from edgetl.quantize.qdq import to_float16
from edgetl.quantize.recipes import load_recipe
from edgetl.stages.detect.compiled import Target, host_checks, place
from edgetl.stages.detect.guard import Climb, MapJudge, ValSet, climb, rank, run_raw
from edgetl.stages.detect.reported import tested, val_accuracy
from edgetl.stages.detect.run import DetectRunInfo, load_detect_run, run_detector
from edgetl.stages.export.archiving import check_archive, manifest_of, replace_archive
from edgetl.stages.export.options import DEFAULT_PARITY_SAMPLES, DEFAULT_RULE, ExportOptions
from edgetl.stages.export.plan import guard_terms

WARN_CALIBRATION = 100  # fewer calibration images: the 4-image calibration that breaks peers
DECODE_FLOAT = ("/decode/",)  # node-name patterns every INT8 recipe keeps float here
BOX_TOLERANCE_PX = 0.05  # FP32 graph vs PyTorch, boxes in input pixels
SCORE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class DetectExportResult:
    out: Path
    manifest: DetectorManifest | None
    failures: list[str] = field(default_factory=list)
    attempts: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.manifest is not None and not self.failures

    def to_dict(self) -> dict[str, Any]:
        if self.manifest is not None:
            return self.manifest.to_dict()
        return {"passed": False, "failures": self.failures}


@dataclass(frozen=True)
class Plan:
    opts: ExportOptions
    info: DetectRunInfo
    profile: TargetProfile
    precision: str
    placement: Placement
    out: Path
    signing_key: Any = None


def export_detector(opts: ExportOptions) -> DetectExportResult:
    plan = _plan(opts)
    with claim(plan.out, opts.force, "export", MANIFEST_FILE):
        replaced = manifest_of(plan.out)
        check_archive(plan.out, opts.archive, opts.force, replaced)
        splits = plan.info.data.load()
        model = run_detector(opts.run, plan.info)
        try:
            with staged_dir(plan.out, opts.force, "export", MANIFEST_FILE) as out_dir, \
                    scratch_dir(plan.out) as scratch:  # fmt: skip
                manifest = _export(plan, splits, model, Path(scratch), out_dir)
        except (CheckFailed, GuardRefused) as failed:
            return DetectExportResult(
                plan.out, None, [str(failed)], getattr(failed, "attempts", [])
            )
        test = manifest.test
        say(f"test mAP50-95 ({test.n} images no choice was made on): artifact "
            f"{test.map50_95:.4f}, FP32 PyTorch {test.fp32_map50_95:.4f}")  # fmt: skip
        say(f"artifact: {plan.out}")
        replace_archive(plan.out, opts.archive, replaced)
    return DetectExportResult(plan.out, manifest)


class GuardRefused(CheckFailed):
    def __init__(self, message: str, attempts: list[Any]):
        super().__init__(message)
        self.attempts = attempts


def _plan(opts: ExportOptions) -> Plan:
    info = load_detect_run(opts.run)
    profile = load_target(opts.target)
    precision = profile.check_precision(opts.precision)
    _check_options(opts)
    if precision == "fp16" and profile.backend == "onnxruntime":
        raise EdgetlError(f"--precision fp16 on {profile.name}: not for detectors yet; use fp32")
    placement = resolve(profile, f"target {profile.name}", export=True)
    out = opts.out or opts.run / "export" / f"{profile.name}-{precision}"
    check_not_input(out, {"the run": opts.run, "the run's data": Path(info.data.source)},
                    allowed_inside={"the run": opts.run / "export"})  # fmt: skip
    signing_key = None
    if opts.sign is not None:
        from edgetl.core.artifact.signing import load_private_key

        signing_key = load_private_key(opts.sign)  # a bad key is exit 2 before the work
    return Plan(opts, info, profile, precision, placement, out, signing_key)


def _check_options(opts: ExportOptions) -> None:
    """Options of the classifier's export a detector's does not take: exit 2 naming them
    rather than a silent default."""
    refused = {
        "--dynamic-batch": opts.dynamic_batch,
        "--calib-data": opts.calib_data is not None,
        f"--rule {opts.rule}": opts.rule != DEFAULT_RULE,
        f"--parity-samples {opts.parity_samples}": opts.parity_samples != DEFAULT_PARITY_SAMPLES,
        "--qat": opts.qat,
    }
    named = [name for name, given in refused.items() if given]
    if named:
        raise EdgetlError(
            f"{', '.join(named)}: not for detectors (batch 1; calibration on the run's train "
            "images; the guard's rule is the paired bound on val mAP; parity on all of val)"
        )


def _images(splits: DetectionSplits, role: str, info: DetectRunInfo, limit: int | None = None
            ) -> np.ndarray:  # fmt: skip
    images = splits.images(role)
    count = len(images) if limit is None else min(limit, len(images))
    letterbox = info.letterbox
    return np.stack([images.preprocessed(i, letterbox) for i in range(count)])


def _export(plan: Plan, splits: DetectionSplits, model: torch.nn.Module, work: Path,
            out_dir: Path) -> DetectorManifest:  # fmt: skip
    started = time.perf_counter()
    info, profile = plan.info, plan.profile
    fp32_path = work / "model.onnx"
    _to_onnx(model, info, fp32_path, profile.opset)
    val_images = _images(splits, "val", info)
    val = ValSet(val_images, splits.val, info.letterbox, info.nms)
    measuring = replace(profile, device=plan.placement.device)
    measurer = plan.placement.measurer()
    load = lambda graph: measurer.load_onnx(graph, measuring)  # noqa: E731
    fp32_graph = onnx.load(str(fp32_path))
    torch_val = _torch_raw(model, val_images)
    fp32_raw = run_raw(load(fp32_graph), val_images)
    _check_fp32(torch_val, _exact_fp32(measurer, fp32_graph, fp32_raw, measuring, val_images))
    judge = MapJudge(val, load, fp32_raw, val.objects(fp32_raw), guard_terms(plan.opts)[1])
    chosen_path, quantization = fp32_path, None
    if plan.precision == "int8":
        chosen_path, quantization, sensitivity = _quantize(plan, splits, judge, work, fp32_path)
        sensitivity.write(out_dir)
        if plan.placement.proxy is None:
            speed = _speed(load, fp32_graph, chosen_path, val_images[:1])
            quantization = replace(quantization, speed_here=speed)
    compiler = plan.placement.compiler()
    target = Target(compiler, plan.placement.runtime, profile, plan.placement.device,
                    plan.precision, fp32_path, load if plan.placement.proxy else None)  # fmt: skip
    placed = place(target, chosen_path, val, load, work)
    files = target.compile(placed.graph, out_dir)
    runner = target.load(out_dir, files)
    parity = replace(placed.parity, host_checks=host_checks(target, out_dir, judge,
                                                            guard_terms(plan.opts)[0]))  # fmt: skip
    compile_s = time.perf_counter() - started
    test = tested(lambda images: _torch_raw(model, images), runner, splits.test,
                  splits.images("test"), placed.how)  # fmt: skip
    test.reference(plan.opts.reference_samples).save(out_dir / DETECTION_REFERENCE_FILE)
    if compiler.ships_wheel:  # a Jetson's package index has no edgetl: the bundle carries it
        from edgetl.core.artifact.selfwheel import build_wheel

        build_wheel(out_dir)
    manifest = DetectorManifest(
        target=profile.name, target_profile=profile.source, backend=profile.backend,
        device=profile.device, precision=plan.precision,  # type: ignore[arg-type]
        model_files=files, runtime_options=compiler.options(profile).to_dict(),
        threads=profile.threads, host_proxy=profile.host_proxy,
        input_shape=[1, 3, info.letterbox.size, info.letterbox.size],
        outputs=list(GRAPH_OUTPUTS if placed.how.nms_where == NMS_IN_GRAPH else OUTPUTS),
        preprocess=info.preprocess, classes=info.classes, nms=info.nms,
        nms_where=placed.how.nms_where, nms_choice=placed.choice,
        run=DetectorRunRef(str(plan.opts.run.resolve()), sha256_file(plan.opts.run / RUN_FILE),
                           info.backbone.name, info.data),
        val=val_accuracy(judge, runner, val, placed.how), test=test.accuracy(), parity=parity,
        compile_s=round(compile_s, 2), versions=versions(), quantization=quantization,
        reference=DETECTION_REFERENCE_FILE,
    )  # fmt: skip
    manifest.write(out_dir)
    if plan.signing_key is not None:
        from edgetl.core.artifact.signing import sign

        say(f"signed with {sign(out_dir, manifest.digest, plan.signing_key)}")
    return manifest


def _to_onnx(model: torch.nn.Module, info: DetectRunInfo, path: Path, opset: int) -> None:
    import json

    graph = detector_onnx(model, info.letterbox.size, path, opset)
    del graph.metadata_props[:]
    for key, value in (("edgetl.task", "detect"), ("edgetl.classes", json.dumps(info.classes)),
                       ("edgetl.preprocess", json.dumps(info.preprocess))):  # fmt: skip
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))


def detector_onnx(model: torch.nn.Module, size: int, path: Path, opset: int) -> onnx.ModelProto:
    """The detector as one ONNX graph at batch 1 (boxes and scores, no NMS), checked."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, size, size),), str(path),
                          input_names=[INPUT_NAME], output_names=list(OUTPUTS),
                          opset_version=opset, do_constant_folding=True, dynamo=False)  # fmt: skip
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    return graph


def _torch_raw(model: torch.nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes, scores = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 32):
            b, s = model(torch.from_numpy(images[start : start + 32]))
            boxes.append(b.numpy())
            scores.append(s.numpy())
    return np.concatenate(boxes), np.concatenate(scores)


Raw = tuple[np.ndarray, np.ndarray]  # boxes, scores


def _exact_fp32(measurer: Any, graph: onnx.ModelProto, measured: Raw, profile: TargetProfile,
                images: np.ndarray) -> Raw:  # fmt: skip
    """The FP32 graph's outputs on ONNX Runtime, exact FP32 on every host (the measuring
    runtime's when it is ONNX Runtime): the export is checked against PyTorch there. Another
    runtime may compute "FP32" in FP16 or BF16 (openvino-cpu-fp16's f16 hint): the compiled
    artifact's parity and the guard, judging INT8 against that runtime's own FP32, see it."""
    from edgetl.backends.registry import get_compiler

    if measurer.name == "onnxruntime":
        return measured
    return run_raw(get_compiler("onnxruntime").load_onnx(graph, profile), images)


def _check_fp32(reference: tuple[np.ndarray, np.ndarray], found: tuple[np.ndarray, np.ndarray]
                ) -> None:  # fmt: skip
    boxes = float(np.abs(reference[0] - found[0]).max())
    scores = float(np.abs(reference[1] - found[1]).max())
    say(f"FP32 graph vs PyTorch on val: boxes within {boxes:.2e} px, scores within {scores:.2e}")
    if boxes > BOX_TOLERANCE_PX or scores > SCORE_TOLERANCE:
        raise CheckFailed(
            f"the FP32 ONNX detector differs from PyTorch before anything else: boxes by "
            f"{boxes:.3g} px (limit {BOX_TOLERANCE_PX}), scores by {scores:.3g} (limit "
            f"{SCORE_TOLERANCE}); no artifact written"
        )


def _quantize(plan: Plan, splits: DetectionSplits, judge: MapJudge, work: Path,
              fp32_path: Path) -> tuple[Path, DetectorQuantization, SensitivityReport]:  # fmt: skip
    opts, info = plan.opts, plan.info
    recipe = load_recipe(opts.recipe or plan.profile.recipe)
    recipe = replace(recipe, float_layers=DECODE_FLOAT)  # the classifier's head patterns: not here
    count = min(opts.calib_samples or recipe.samples, len(splits.train))
    if count < MIN_SAMPLES:
        raise EdgetlError(f"train has {count} images: INT8 calibration needs {MIN_SAMPLES}")
    if count < WARN_CALIBRATION:
        say(f"[yellow]warning:[/] calibrating on {count} train images (< {WARN_CALIBRATION}): "
            "detectors calibrated on a handful of images are the INT8 models that lose "
            "most of their mAP; give train more images")  # fmt: skip
    images, source = _images(splits, "train", info, count), f"{info.data.source} (train)"
    calibration = CalibrationSet(images, splits.train.keys[:count], source, 0)
    budget, confidence = guard_terms(opts)
    say(f"quantizing with {recipe.name} ({recipe.engine}) on {count} calibration images; the "
        f"guard judges val mAP50-95 against FP32's {judge.fp32_map:.4f} (budget {budget:g} pts "
        f"at {confidence:.0%})")  # fmt: skip
    compiler = plan.placement.compiler()
    candidates = Candidates.quantize(prepared_graph(fp32_path, work / "prepared.onnx"), calibration,
                                     recipe, compiler.rewrite_int8)  # fmt: skip
    rank_load = ranking_loader(plan.profile)
    fp16 = None
    if plan.profile.float_layers == "fp16":  # mixed precision: float layers in FP16 if it holds
        fp16 = lambda graph, layers: compiler.rewrite_int8(to_float16(graph, layers))  # noqa: E731
    found: Climb = climb(candidates, judge, budget,
                         lambda base: rank(candidates, judge, base, rank_load),
                         recipe.guard.max_float_layers, fp16)  # fmt: skip
    if found.chosen is None:
        raise GuardRefused(
            f"INT8 refused: no candidate is shown, at {confidence:.0%} on {len(judge.val.images)} "
            f"val images, to lose at most {budget:g} mAP50-95 points; export fp32, or give val "
            "more images", found.attempts)  # fmt: skip
    path = work / "model.int8.onnx"
    onnx.save(found.chosen.model, str(path))
    ranking = found.ranking
    if ranking is None and opts.sensitivity:  # the report ranks every layer
        ranking = rank(candidates, judge, [], rank_load)
    ranked = ranking.layers if ranking is not None else []
    record = DetectorQuantization(
        recipe.name, count, budget, confidence, "paired-bootstrap", found.attempts,
        list(found.chosen.attempt.float_layers),
        [Sensitivity(r.layer, r.score) for r in ranked[:20]],
        float16=found.chosen.attempt.float16,
    )  # fmt: skip
    measured = (
        ""
        if ranking is None
        else (
            "val mAP50-95 brought back by keeping the layer (with those reading its tensor) "
            f"float beside the head outputs, on {ranking.images} val images (ONNX Runtime)"
        )
    )
    report = sensitivity_report("detect", found.attempts, ranking, candidates.quantized_layers(),
                                measured)  # fmt: skip
    return path, record, report


def _speed(load: Callable[[onnx.ModelProto], Runner], fp32: onnx.ModelProto, int8_path: Path,
           single: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """Does INT8 pay off here? The two graphs (NMS aside) timed in alternating rounds."""
    with heartbeat("FP32 and INT8 detectors timed side by side (does INT8 pay off here?)"):
        speed = compare_speed(load(fp32), load(onnx.load(str(int8_path))), single)
    line = payoff_line(speed)
    say(line if speed["pays_off"] else f"[yellow]warning:[/] {line}")
    return speed


def prepared_graph(source: Path, target: Path) -> onnx.ModelProto:
    """ONNX Runtime's quant_pre_process without its symbolic shape inference (it gives up
    on the neck's Resize; every shape here is static, so ONNX's own inference suffices)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    return onnx.load(str(target))
