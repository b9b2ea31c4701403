"""Latency of an architecture on the target's runtime, before any weight is trained: the
backbone with a head of random weights (latency depends on the shapes, not the values),
exported to ONNX, INT8-quantized where asked (calibrated on a few train images), compiled
by the target's backend as an artifact would be (OpenVINO: an IR, FP16-compressed for
fp16) and loaded by its runtime here, timed at batch 1."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from edgetl.backends.artifact import load
from edgetl.backends.base import Runner
from edgetl.backends.compiler import CompileInput
from edgetl.backends.placement import resolve
from edgetl.backends.probe import Probe, TimedArch, artifact_probe
from edgetl.core.constants import INPUT_NAME, OUTPUT_NAME
from edgetl.core.errors import EdgetlError
from edgetl.core.measures.timing import interleaved_samples, rounds_for, summarize
from edgetl.core.records import Manifest, RuntimeSpec
from edgetl.core.targets import TargetProfile
from edgetl.quantize.engines import ENGINES, float_node_names, prepare
from edgetl.quantize.recipes import load_recipe
from edgetl.stages.search.space import Candidate
from edgetl.train.backbones import Backbone
from edgetl.train.model import Classifier, Head


@dataclass(frozen=True)
class LoadedArch:
    """An architecture ready to time: its runner, one input, its size and runtime name."""

    runner: Runner
    single: np.ndarray
    size_mb: float
    runtime: str


def compile_arch(
    candidate: Candidate,
    backbone: Backbone,
    classes: int,
    calibration: np.ndarray,
    profile: TargetProfile,
    out: Path,
) -> Probe:
    """`candidate`'s architecture (a random head) compiled by the target's backend into
    `out`, as an artifact would be (OpenVINO: an IR), with its probe.json."""
    torch.manual_seed(0)
    model = Classifier(backbone.model, Head(backbone.num_features, classes, candidate.hidden))
    with tempfile.TemporaryDirectory(prefix="edgetl-search-") as tmp:
        path = Path(tmp) / "model.onnx"
        _to_onnx(model.eval(), candidate.size, path, profile.opset)
        return compile_graph(path, candidate.size, candidate.precision, calibration, profile,
                             out)  # fmt: skip


def compile_graph(
    path: Path,
    size: int,
    precision: str,
    calibration: np.ndarray,
    profile: TargetProfile,
    out: Path,
    prepared: Callable[[Path, Path], onnx.ModelProto] = prepare,
    float_layers: tuple[str, ...] | None = None,
) -> Probe:
    """The FP32 graph at `path` made what an artifact of `profile` would run: INT8-quantized
    where asked (calibrated on `calibration`, `prepared` first; `float_layers`: the recipe's
    float patterns replaced), compiled by the target's backend into `out`, with its
    probe.json. Scratch files go beside `path`."""
    placement = resolve(profile, f"target {profile.name}", export=True)
    out.mkdir(parents=True, exist_ok=True)
    work, fp32_path = path.parent, None
    if precision == "int8":
        graph = prepared(path, work / "prepared.onnx")
        recipe = load_recipe(profile.recipe)
        if float_layers is not None:
            recipe = replace(recipe, float_layers=float_layers)
        floats = float_node_names(graph, recipe)
        quantized = ENGINES[recipe.engine](graph, calibration, recipe, floats)
        fp32_path, path = work / "prepared.onnx", work / "model.int8.onnx"
        onnx.save(placement.compiler().rewrite_int8(quantized), str(path))
    checked = profile.check_precision(precision)
    files = placement.compiler().compile(CompileInput(path, checked, fp32_path), out, profile)
    probe = Probe(placement.backend.name, files, size, checked, profile.device,
                  dict(profile.options), profile.threads)  # fmt: skip
    probe.write(out)
    return probe


def load_arch(
    candidate: Candidate,
    backbone: Backbone,
    classes: int,
    calibration: np.ndarray,
    profile: TargetProfile,
) -> LoadedArch:
    """`candidate`'s architecture loaded by the target's runtime here (a random head)."""
    with tempfile.TemporaryDirectory(prefix="edgetl-search-") as tmp:
        compiled = Path(tmp) / "compiled"
        probe = compile_arch(candidate, backbone, classes, calibration, profile, compiled)
        return load_probe(probe, compiled, profile, calibration[:1])


def load_probe(probe: Probe, compiled: Path, profile: TargetProfile, single: np.ndarray
               ) -> LoadedArch:  # fmt: skip
    """A compiled probe loaded by the target's runtime here, or, where that runtime is not
    here, its ONNX graph on the host proxy (whose latency is not the device's); `single`:
    the input it is timed on."""
    placement = resolve(profile, f"target {profile.name}", export=True)
    measuring = replace(profile, device=placement.device)
    size_mb = sum((compiled / name).stat().st_size for name in probe.files) / 1e6
    if placement.proxy is None:
        spec = RuntimeSpec(probe.files, measuring.device, dict(measuring.options),
                           measuring.threads)  # fmt: skip
        runner = placement.backend.load(compiled, spec)
    else:
        onnx_files = [name for name in probe.files if name.endswith(".onnx")]
        runner = placement.measurer().load_onnx(onnx.load(str(compiled / onnx_files[0])),
                                             measuring)  # fmt: skip
    runtime = placement.runtime.name
    if placement.proxy is not None:
        runtime += f" (proxy for {placement.backend.name})"
    return LoadedArch(runner, single, round(size_mb, 3), runtime)


def check_reference(path: Path, profile: TargetProfile) -> Manifest:
    """`--reference`'s manifest (every checksum verified), or exit 2 when it is not an
    artifact of the searched target: a budget relative to another target's model means
    nothing."""
    return _for_target(Manifest.read(path), path, profile)


def _for_target(manifest: Manifest, path: Path, profile: TargetProfile) -> Manifest:
    if manifest.target != profile.name:
        raise EdgetlError(
            f"--reference {path}: exported for target {manifest.target}, the search is for "
            f"{profile.name}; export the reference with --target {profile.name}"
        )
    return manifest


def load_reference(path: Path, profile: TargetProfile) -> LoadedArch:
    """The `--reference` artifact loaded by the same runtime as the candidates, to be timed
    in the same interleaved rounds: a budget relative to it ("1.2x") then compares the two
    at one moment (a bench minutes earlier on this shared 2-core machine timed the same
    architecture at 0.52 ms, the search at 0.84 ms)."""
    model = load(path)  # verifies every checksum
    _for_target(model.manifest, path, profile)
    placement = resolve(profile, f"target {profile.name}", export=True)
    if model.proxy != placement.proxy:
        raise EdgetlError(
            f"--reference {path}: runs on {model.proxy or model.manifest.backend} here, the "
            f"candidates on {placement.runtime.name}: they cannot be timed alike"
        )
    runtime = placement.runtime.name
    if placement.proxy is not None:
        runtime += f" (proxy for {placement.backend.name})"
    size = model.manifest.preprocess.size
    single = np.zeros((1, 3, size, size), np.float32)
    return LoadedArch(model.runner, single, round(model.manifest.model_bytes / 1e6, 3), runtime)


def reference_probe(path: Path, profile: TargetProfile, out: Path) -> Path:
    """The `--reference` artifact as a latency probe folder (for `search --on`): its files
    copied to `out` with a probe.json saying how to load them there."""
    manifest = check_reference(path, profile)
    return artifact_probe(path, manifest, manifest.preprocess.size, out)


def time_archs(loaded: dict[str, LoadedArch], iterations: int) -> dict[str, TimedArch]:
    """Batch-1 latency of every loaded architecture, measured in interleaved rounds (a busy
    spell on a shared machine hits them all alike, not the one timed at that moment)."""
    calls = {key: _call(arch) for key, arch in loaded.items()}
    samples = interleaved_samples(calls, iterations, rounds_for(iterations), warmup=10)
    return {key: TimedArch(summarize(samples[key]), arch.size_mb, arch.runtime)
            for key, arch in loaded.items()}  # fmt: skip


def _call(arch: LoadedArch) -> Callable[[], object]:
    return lambda: arch.runner.run(arch.single)


def _to_onnx(model: torch.nn.Module, size: int, path: Path, opset: int) -> None:
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 3, size, size),), str(path), input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], opset_version=opset, do_constant_folding=True,
            dynamo=False,
        )  # fmt: skip
