"""Steps 3-6 of an export: ONNX -> quantize -> compile -> verify; each returns a frozen record
the next takes (Polygraphy's composable loaders, as plain functions). Packaging is package.py.

Every measurement is made once: PyTorch's logits in inputs.py, the guard's in quantize, the
artifact's on val (parity and the budget) and on test (reported, and the reference set's
logits taken from them) in verify.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgetl.backends import Runner, RuntimeSpec, run_all
from edgetl.backends.compiler import CompileInput
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.evidence import FLIPS_RULE, decide
from edgetl.core.measures.metrics import agreement, drop_pts, paired_drop, top1
from edgetl.core.measures.parity import compare
from edgetl.core.records import Attempt, ParityCheck, QuantizationRecord, SplitAccuracy
from edgetl.core.targets import Parity
from edgetl.core.ui import heartbeat
from edgetl.quantize.calibration import CalibrationSet
from edgetl.quantize.engines import prepare
from edgetl.quantize.guard import GuardResult, Validation, quantize_with_guard
from edgetl.quantize.guard.qat import Qat
from edgetl.quantize.guard.ranker import ranking_loader
from edgetl.quantize.guard.refit import HeadRefit
from edgetl.quantize.int8 import compare_speed, copy_metadata, payoff_line
from edgetl.quantize.recipes import Recipe
from edgetl.stages.export.inputs import Inputs, unlabelled_images
from edgetl.stages.export.own_int8 import climb, judged
from edgetl.stages.export.plan import Plan, guard_terms
from edgetl.train.onnx_export import export_onnx

FP32_TOLERANCE = Parity(max_abs_diff=1e-3, min_agreement=1.0)


@dataclass(frozen=True)
class Quantized:
    guard: GuardResult[onnx.ModelProto]
    prepared: Path  # the FP32 graph it was quantized from (shape-inferred, folded)
    # Batch-1 p50 of FP32 and INT8 on this machine, side by side; empty when a host proxy
    # measured (its speed says nothing about the target's runtime).
    speed: dict[str, Any]  # quantize/int8.compare_speed's: the ratio and whether it pays off
    recipe: Recipe
    calibration: CalibrationSet


@dataclass(frozen=True)
class Graph:
    """The ONNX graph the backend compiles, and the logits on val the artifact must match."""

    path: Path
    model: onnx.ModelProto  # the graph at `path`, as written (read from disk by no step)
    reference: np.ndarray  # PyTorch's (FP32), or the guard's chosen INT8 model's
    quantized: Quantized | None = None


@dataclass(frozen=True)
class Compiled:
    model_files: list[str]
    runner: Runner  # the written artifact on its runtime, or its graph on the host proxy
    compile_s: float  # ONNX export, quantization and compilation
    # The runner's logits on val when they were measured already: on the host proxy an INT8
    # graph runs in the guard's own runner, whose val logits the guard kept.
    val_logits: np.ndarray | None = None
    # The ladder of a compiler's own INT8 (stages/export/own_int8.climb), the last written
    own_attempts: list[Attempt] | None = None


@dataclass(frozen=True)
class Verified:
    parity: ParityCheck  # the artifact on val against Graph.reference
    host_checks: dict[str, ParityCheck]
    test_logits: np.ndarray  # the artifact on the test images: measured once
    # INT8 of a compiler's own quantizer, judged by the guard's rule (stages/export/own_int8)
    own_int8: QuantizationRecord | None = None


def to_onnx(plan: Plan, inputs: Inputs, work: Path) -> Graph:
    path = work / "model.onnx"
    model = export_onnx(inputs.model, plan.run, path, plan.profile.opset, plan.opts.dynamic_batch)
    return Graph(path, model, inputs.val_torch)


def quantize(plan: Plan, inputs: Inputs, graph: Graph, work: Path) -> Graph:
    """The INT8 graph under the accuracy guard (decided on val); `graph` as it is otherwise."""
    if plan.recipe is None or inputs.calibration is None:
        return graph
    _check_engine(plan)
    if plan.compiler.quantizes_itself:  # compile_artifact quantizes; verify judges it
        return graph
    profile, measuring, measurer = plan.profile, plan.measuring, plan.measurer
    prepared_path = work / "prepared.onnx"
    budget, confidence = guard_terms(plan.opts)
    flips = plan.opts.rule == FLIPS_RULE
    unlabelled = unlabelled_images(plan, inputs) if flips else None
    result = quantize_with_guard(
        prepare(graph.path, prepared_path),
        inputs.calibration,
        Validation(inputs.val, inputs.val_labels, plan.run.seed, unlabelled),
        lambda model: measurer.load_onnx(model, measuring),
        budget,
        plan.recipe,
        rewrite=plan.compiler.rewrite_int8,
        rank_fn=ranking_loader(profile),
        refit=lambda evaluator: HeadRefit(plan.run, inputs.splits.train, evaluator).apply,
        qat=(lambda: Qat(plan.run, inputs.splits.train).apply)
        if plan.opts.qat_rung or plan.opts.qat
        else None,
        qat_first=plan.opts.qat,
        always_rank=plan.opts.sensitivity,
        float16=profile.float_layers == "fp16",
        fp32_reference=(inputs.val_torch, profile.parity.get("fp32", FP32_TOLERANCE)),
        confidence=confidence,
    )
    copy_metadata(graph.model, result.model)
    path = work / "model.int8.onnx"
    onnx.save(result.model, str(path))
    speed: dict[str, Any] = {}
    if plan.placement.proxy is None:
        with heartbeat("FP32 and INT8 timed side by side (does INT8 pay off here?)"):
            speed = compare_speed(result.fp32_runner, result.runner, inputs.val[:1])
    if speed and not speed["pays_off"]:
        kept = len(result.report.chosen.float_layers)
        say(f"[yellow]warning:[/] {payoff_line(speed)} ({kept} layers kept float; the "
            "default nncf-mixed recipe needs fewer)")  # fmt: skip
    quantized = Quantized(result, prepared_path, speed, plan.recipe, inputs.calibration)
    return Graph(path, result.model, result.logits, quantized)


def _check_engine(plan: Plan) -> None:
    """A PT2E recipe only where the compiler quantizes the PyTorch model itself, and the
    other way round."""
    assert plan.recipe is not None
    own, pt2e = plan.compiler.quantizes_itself, plan.recipe.engine == "pt2e"
    if own != pt2e:
        raise EdgetlError(
            f"--recipe {plan.recipe.name} (engine {plan.recipe.engine}) cannot quantize for "
            f"target {plan.profile.name} ({plan.profile.backend}): "
            + ("give a pt2e recipe, e.g. xnnpack-pt2e" if own else "it quantizes the ONNX "
               "graph; give an nncf or onnxruntime recipe")
        )  # fmt: skip


def compile_artifact(
    plan: Plan, inputs: Inputs, graph: Graph, out_dir: Path, started: float
) -> Compiled:
    prepared = graph.quantized.prepared if graph.quantized is not None else None
    source = CompileInput(graph.path, plan.precision, prepared)
    if plan.compiler.quantizes_itself:
        return _compile_own(plan, inputs, source, out_dir, started)
    files = plan.compiler.compile(source, out_dir, plan.profile)
    compile_s = time.perf_counter() - started
    measuring = plan.measuring
    if plan.placement.proxy is None:
        spec = RuntimeSpec(files, measuring.device, measuring.options, measuring.threads)
        return Compiled(files, plan.placement.backend.load(out_dir, spec), compile_s)
    if graph.quantized is not None:  # the graph the guard chose, in the runner it measured with
        guard = graph.quantized.guard
        return Compiled(files, guard.runner, compile_s, guard.logits)
    return Compiled(files, plan.measurer.load_onnx(graph.model, measuring), compile_s)


def _compile_own(
    plan: Plan, inputs: Inputs, source: CompileInput, out_dir: Path, started: float
) -> Compiled:
    """A compiler that starts from PyTorch (ExecuTorch); for INT8 its own quantizer climbs
    stages/export/own_int8's ladder, each rung written, run on val and judged."""
    calibration = inputs.calibration.images if inputs.calibration is not None else None
    source = replace(source, torch_model=inputs.model, example=inputs.val[:1],
                     calibration=calibration)  # fmt: skip
    measuring = plan.measuring
    written: list[Compiled] = []  # the last rung written: the artifact

    def write(float_modules: tuple[str, ...]) -> Compiled:
        files = plan.compiler.compile(replace(source, float_modules=float_modules), out_dir,
                                      plan.profile)  # fmt: skip
        spec = RuntimeSpec(files, measuring.device, measuring.options, measuring.threads)
        written.append(Compiled(files, plan.placement.backend.load(out_dir, spec), 0.0))
        return written[-1]

    if plan.precision != "int8":
        return replace(write(()), compile_s=time.perf_counter() - started)
    logits: list[np.ndarray] = []  # each rung's val logits, measured once: verify reuses them

    def rung_logits(rung: tuple[str, tuple[str, ...]]) -> np.ndarray:
        logits.append(run_all(write(rung[1]).runner, inputs.val))
        return logits[-1]

    attempts = climb(plan, inputs, rung_logits)
    return replace(written[-1], compile_s=time.perf_counter() - started, val_logits=logits[-1],
                   own_attempts=attempts)  # fmt: skip


def verify(plan: Plan, inputs: Inputs, graph: Graph, compiled: Compiled, out_dir: Path) -> Verified:
    """Parity (and for INT8 the budget) on val, the artifact's other graphs, then test once;
    CheckFailed (nothing written) when a check fails."""
    measured = compiled.val_logits is not None
    logits = compiled.val_logits if measured else run_all(compiled.runner, inputs.val)
    assert logits is not None
    parity = compare(
        graph.reference, logits, inputs.val_labels, plan.profile.parity[plan.precision]
    )
    quantized = graph.quantized
    if measured and quantized is not None:  # the guard's graph in its runner: nothing new
        say(
            f"parity: the host proxy runs the INT8 graph the guard measured on {parity.n} val "
            "images (its logits, not measured again); the device checks it with `edgetl build`"
        )
    elif quantized is None and plan.precision == "int8":
        say(f"INT8 vs FP32 torch on {parity.n} val images: max |logit diff| "
            f"{parity.max_abs_diff:.2e}, top-1 agreement {parity.agreement:.2%} (INT8 is judged "
            "by the guard's rule below)")  # fmt: skip
    else:
        print_parity(parity, "INT8 model the guard measured" if quantized else "torch")
    own_int8 = None
    if quantized is not None:
        _check_artifact_budget(plan, quantized, logits, inputs.val_labels)
    elif plan.precision == "int8":  # the compiler's own INT8: the guard's rule, against FP32
        assert compiled.own_attempts is not None
        own_int8 = judged(plan, inputs, compiled.own_attempts, compiled.compile_s)
    if not parity.passed:
        raise CheckFailed(
            f"parity check failed for {plan.name}: {parity.shortfall()}; no artifact written"
        )
    extra = _host_checks(plan, inputs, out_dir)
    return Verified(parity, extra, run_all(compiled.runner, inputs.test), own_int8)


def _host_checks(plan: Plan, inputs: Inputs, out_dir: Path) -> dict[str, ParityCheck]:
    """The artifact's other graphs (e.g. TensorRT 11's FP16-typed ONNX) against PyTorch's
    FP32 logits on the host proxy, each within the profile's tolerance for it."""
    measuring = plan.measuring
    found: dict[str, ParityCheck] = {}
    for what, path, key in plan.compiler.host_checks(out_dir, plan.precision, plan.profile):
        tolerance = measuring.parity.get(key)
        if tolerance is None:
            raise EdgetlError(f"{measuring.source}: [parity] has no {key} tolerance for {what}")
        model = onnx.load(str(path))
        runner = _host_runner(plan, model, what)
        logits = run_all(runner, inputs.val)
        result = compare(inputs.val_torch, logits, inputs.val_labels, tolerance)
        print_parity(result, f"torch ({what}, {path.name})")
        if not result.passed:
            raise CheckFailed(f"{what} ({path.name}): {result.shortfall()}; no artifact written")
        found[path.name] = result
    return found


def _host_runner(plan: Plan, model: onnx.ModelProto, what: str) -> Runner:
    """The graph on the host proxy. An FP16 graph on ONNX Runtime's CPU provider runs partly
    in FP32 (it lacks most FP16 kernels on x86): said once, in words, instead of its
    colour-coded warnings twice per session."""
    measurer = plan.measurer
    if measurer.name != "onnxruntime" or plan.precision != "fp16":
        return measurer.load_onnx(model, plan.measuring)
    from edgetl.backends.onnxruntime.fp16 import fp32_fallbacks, quiet

    with quiet():
        fallbacks = fp32_fallbacks(model)
        runner = measurer.load_onnx(model, plan.measuring)
    if fallbacks:
        ops = ", ".join(f"{op} {n}" for op, n in fallbacks.most_common())
        say(
            f"note: ONNX Runtime's CPU provider ran {sum(fallbacks.values())} nodes of the "
            f"{what} in FP32 ({ops}): it lacks their FP16 kernels here. The host check covers "
            "the graph and its FP16 weights; FP16 arithmetic is checked on the device by "
            "`edgetl build`"
        )
    return runner


def _check_artifact_budget(
    plan: Plan, quantized: Quantized, logits: np.ndarray, labels: np.ndarray
) -> None:
    """The compiled artifact, loaded as a user will load it, must pass the guard's rule too."""
    budget, confidence = guard_terms(plan.opts)
    paired = paired_drop(quantized.guard.fp32_logits, logits, labels)
    verdict = decide(paired, budget, confidence)
    if not verdict.accepted:
        raise CheckFailed(
            f"on {plan.profile.backend} ({plan.profile.device}) the INT8 artifact loses "
            f"{paired.drop_pts:.2f} pts of val top-1 against FP32 ({paired.worse} images worse, "
            f"{paired.better} better): at {confidence:.0%} confidence at most "
            f"{paired.upper_pts(confidence):.2f} > --max-accuracy-drop {budget:.2f}; "
            "no artifact written"
        )


def reported_accuracy(inputs: Inputs, verified: Verified) -> SplitAccuracy:
    """The artifact and FP32 PyTorch on the test images (reported, never chosen on), from the
    one measurement of each there."""
    artifact_top1 = top1(verified.test_logits, inputs.test_labels)
    fp32_top1 = inputs.test_fp32_top1
    paired = paired_drop(inputs.test_torch, verified.test_logits, inputs.test_labels)
    return SplitAccuracy(
        n=int(len(inputs.test_labels)),
        top1=artifact_top1,
        fp32_top1=fp32_top1,
        drop_pts=round(drop_pts(fp32_top1, artifact_top1), 4),
        agreement=agreement(verified.test_logits, inputs.test_torch),
        worse=paired.worse,
        better=paired.better,
    )


def print_parity(parity: ParityCheck, reference: str = "torch") -> None:
    verdict = "[green]pass[/]" if parity.passed else "[red]FAIL[/]"
    relative = "" if parity.max_rel_diff is None else f" ({parity.max_rel_diff:.2e} of range)"
    say(
        f"parity vs {reference} on {parity.n} val images: max |logit diff| "
        f"{parity.max_abs_diff:.2e}{relative}, top-1 agreement {parity.agreement:.2%}, top-1 "
        f"reference {parity.reference_top1:.2%} / "
        f"artifact {parity.artifact_top1:.2%}: {verdict}"
    )
