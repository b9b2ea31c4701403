"""The last step of an export: manifest, reference set and signature beside the model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.backends import run_all
from edgetl.core.artifact.reference import REFERENCE_FILE
from edgetl.core.events import say
from edgetl.core.records import (
    AccuracyRecord,
    Manifest,
    ParityRecord,
    QuantizationRecord,
    ReferenceInfo,
    RunRef,
    SplitAccuracy,
)
from edgetl.core.records.sensitivity import SensitivityReport
from edgetl.core.versions import versions
from edgetl.quantize.guard.report import GuardReport, sensitivity_report
from edgetl.stages.export.inputs import Inputs
from edgetl.stages.export.plan import Plan
from edgetl.stages.export.steps import (
    Compiled,
    Graph,
    Verified,
    reported_accuracy,
)


def package(
    plan: Plan,
    inputs: Inputs,
    graph: Graph,
    compiled: Compiled,
    verified: Verified,
    out_dir: Path,
) -> Manifest:
    """Write reference.npz, edgetl's wheel where the device installs from the artifact,
    manifest.json (and with a key, its signature) into `out_dir`."""
    _write_reference(plan, inputs, compiled, verified, out_dir)
    if graph.quantized is not None:
        _sensitivity(graph.quantized.guard.report).write(out_dir)
    if plan.compiler.ships_wheel:
        from edgetl.core.artifact.selfwheel import build_wheel

        build_wheel(out_dir)  # the device installs the very edgetl that made the artifact
    run, profile, opts = plan.run, plan.profile, plan.opts
    test = reported_accuracy(inputs, verified)
    manifest = Manifest(
        target=profile.name,
        target_profile=profile.source,
        backend=profile.backend,
        device=profile.device,
        precision=plan.precision,
        model_files=compiled.model_files,
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
        parity=_parity(verified),
        accuracy=_accuracy(plan, verified, test),
        reference=ReferenceInfo(REFERENCE_FILE, len(inputs.reference), "test", run.seed),
        versions={**versions(), "runtime": plan.placement.runtime.runtime_version()},
        threads=profile.threads,
        host_proxy=profile.host_proxy,
        compile_s=round(compiled.compile_s, 3),
        quantization=_quantization(graph, verified),
    )
    manifest.write(out_dir)
    if plan.signing_key is not None:
        from edgetl.core.artifact.signing import sign

        say(f"signed with {sign(out_dir, manifest.digest, plan.signing_key)}")
    return manifest


def _write_reference(
    plan: Plan, inputs: Inputs, compiled: Compiled, verified: Verified, out_dir: Path
) -> None:
    """The reference set with the artifact's own logits, taken from its test logits when
    every reference image is among the test images (always, up to 2,000 test images)."""
    reference = inputs.reference
    if inputs.reference_index is not None:
        logits = verified.test_logits[inputs.reference_index]
    else:
        logits = run_all(compiled.runner, plan.run.preprocess.normalize(reference.images))
    reference.artifact_logits = logits.astype(np.float32)
    reference.save(out_dir / REFERENCE_FILE)


def _sensitivity(report: GuardReport) -> SensitivityReport:
    ranking = report.ranking
    measured = "" if ranking is None else (
        f"share of INT8's logit error (vs FP32) removed by keeping the layer alone float, "
        f"on {ranking.images} val images (ONNX Runtime)"
    )  # fmt: skip
    return sensitivity_report("classify", report.attempts, ranking, report.quantizable, measured)


def _parity(verified: Verified) -> ParityRecord:
    return ParityRecord(**vars(verified.parity), host_checks=verified.host_checks or None)


def _accuracy(plan: Plan, verified: Verified, test: SplitAccuracy) -> AccuracyRecord:
    parity = verified.parity
    return AccuracyRecord(
        measured_on=plan.placement.runtime.name,
        measured_device=plan.placement.device,
        val=SplitAccuracy(n=parity.n, top1=parity.artifact_top1, fp32_top1=parity.reference_top1),
        test=test,
    )


def _quantization(graph: Graph, verified: Verified) -> QuantizationRecord | None:
    """The guard's numbers, all on val (the test numbers are the manifest's accuracy.test)."""
    quantized = graph.quantized
    if quantized is None:
        return verified.own_int8
    report = quantized.guard.report
    return QuantizationRecord(
        recipe=quantized.recipe,
        calibration={**quantized.calibration.describe(), "time_s": round(report.quantize_s, 2)},
        **report.fields(),
        speed_here=quantized.speed,
        artifact_top1=verified.parity.artifact_top1,
    )
