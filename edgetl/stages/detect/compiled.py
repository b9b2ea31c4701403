"""The detector's graph compiled for the target, twice: with NMS in NumPy after it and with NMS
in the graph (nms_graph.py); the first checked against the in-memory graph (raw outputs), the
second against the first (detections); the faster, measured here, is what ships."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgetl.backends.compiler import CompileInput
from edgetl.backends.detector import detect, in_turn
from edgetl.core.errors import CheckFailed
from edgetl.core.events import say
from edgetl.core.letterbox import Letterbox
from edgetl.core.measures.detection import agreement, coco_map
from edgetl.core.measures.timing import interleaved_p50
from edgetl.core.postprocess import NmsSettings
from edgetl.core.records import RuntimeSpec
from edgetl.core.records.detector import NMS_IN_GRAPH, NMS_ON_DEVICE, DetectorParity, NmsChoice
from edgetl.stages.detect.guard import ValSet, run_raw
from edgetl.stages.detect.nms_graph import with_nms

# The compiled artifact against the graph it came from, on val's raw outputs: the same graph
# compiled (ORT's offline optimizations, OpenVINO's IR) differs by float rounding only. Its
# detections' agreement is recorded, not gated: a box whose score sits at the 0.05 floor
# comes and goes with the last bit (an untrained head: 96.6% with scores within 1e-7).
COMPILED_SCORE_TOLERANCE = 1e-2
COMPILED_BOX_TOLERANCE_PX = 0.5
# The graph's NMS against NumPy's on the same compiled graph, by val mAP50-95: their
# detections differ only in ties (a letterbox's padding gives many locations one score, and
# which of them fill the last of the 100 places is arbitrary: 96.6% agreement on an untrained
# head with the same mAP), so agreement is recorded and mAP decides.
MAX_NMS_MAP_DIFF = 0.001
NMS_TIMING_ITERATIONS = 60


@dataclass(frozen=True)
class How:
    """Postprocessing as a manifest states it (backends/detector.Postprocess)."""

    nms: NmsSettings
    nms_where: str
    letterbox: Letterbox


@dataclass(frozen=True)
class Target:
    """Where the graph is compiled and run: the plan's compiler, runtime and profile."""

    compiler: Any
    runtime: Any
    profile: Any
    device: str
    precision: str
    fp32: Path
    # The host proxy's loader of an in-memory graph, where the target's runtime is not here
    # (TensorRT): the bundle's ONNX is what it runs.
    proxy: Any = None

    def compile(self, graph: Path, folder: Path) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        given = CompileInput(graph, self.precision,  # type: ignore[arg-type]
                             self.fp32 if self.precision == "int8" else None)  # fmt: skip
        return list(self.compiler.compile(given, folder, self.profile))

    def load(self, folder: Path, files: list[str]) -> Any:
        if self.proxy is not None:
            return self.proxy(onnx.load(str(folder / files[0])))
        options = self.compiler.options(self.profile).to_dict()
        return self.runtime.load(folder, RuntimeSpec(files, self.device, options,
                                                     self.profile.threads))  # fmt: skip


@dataclass(frozen=True)
class Placed:
    files: list[str]
    graph: Path  # the ONNX graph compiled into `files`
    how: How
    parity: DetectorParity
    choice: NmsChoice


def place(target: Target, chosen: Path, val: ValSet, load: Any, work: Path) -> Placed:
    """Both variants compiled and checked, timed; the faster's graph and postprocessing."""
    if target.proxy is not None:
        return _place_untimed(target, chosen, val, load, work)
    plain_files = target.compile(chosen, work / "numpy-nms")
    plain = target.load(work / "numpy-nms", plain_files)
    parity = _parity(plain, val, chosen, load)
    nms_path = work / "model.nms.onnx"
    onnx.save(with_nms(onnx.load(str(chosen)), val.nms), str(nms_path))
    graph_files = target.compile(nms_path, work / "graph-nms")
    in_graph = target.load(work / "graph-nms", graph_files)
    ours, theirs = (
        How(val.nms, NMS_ON_DEVICE, val.letterbox),
        How(val.nms, NMS_IN_GRAPH, val.letterbox),
    )
    truth = val.truth
    numpy_found = detect(plain, val.images, truth.sizes, ours)
    graph_found = detect(in_graph, val.images, truth.sizes, theirs)
    agreed = agreement(numpy_found, graph_found)
    maps = [coco_map(truth.objects, found, truth.sizes, len(truth.classes)).map50_95
            for found in (numpy_found, graph_found)]  # fmt: skip
    if abs(maps[0] - maps[1]) > MAX_NMS_MAP_DIFF:
        raise CheckFailed(
            f"NMS in the graph gives val mAP50-95 {maps[1]:.4f}, NumPy's {maps[0]:.4f} on the "
            "same graph; no artifact written"
        )
    p50 = _timed({NMS_ON_DEVICE: (plain, ours), NMS_IN_GRAPH: (in_graph, theirs)}, val)
    where = min(p50, key=lambda k: p50[k])
    say(f"NMS: {p50[NMS_ON_DEVICE]:.2f} ms batch-1 p50 in NumPy after the graph, "
        f"{p50[NMS_IN_GRAPH]:.2f} ms in the graph: {where} ships")  # fmt: skip
    choice = NmsChoice(round(p50[NMS_ON_DEVICE], 4), round(p50[NMS_IN_GRAPH], 4),
                       None if agreed is None else round(agreed, 5))  # fmt: skip
    graph, how = (nms_path, theirs) if where == NMS_IN_GRAPH else (chosen, ours)
    return Placed(graph_files if where == NMS_IN_GRAPH else plain_files, graph, how, parity, choice)


def _place_untimed(target: Target, chosen: Path, val: ValSet, load: Any, work: Path) -> Placed:
    """A bundle whose engine is built on the device: NMS cannot be timed here, so it runs in
    NumPy after the engine, the route every TensorRT release and DLA take (NMS is no DLA
    layer; TensorRT imports ONNX NonMaxSuppression only from 8.5, on the GPU)."""
    files = target.compile(chosen, work / "numpy-nms")
    parity = _parity(target.load(work / "numpy-nms", files), val, chosen, load)
    note = (f"{target.profile.backend} is not on this host: NMS placement is not timed here; "
            "NMS runs in NumPy after the engine on the device")  # fmt: skip
    say(f"NMS: {note}")
    choice = NmsChoice(None, None, None, note)
    return Placed(files, chosen, How(val.nms, NMS_ON_DEVICE, val.letterbox), parity, choice)


def _timed(variants: dict[str, tuple[Any, How]], val: ValSet) -> dict[str, float]:
    images, sizes = val.images[:8], val.truth.sizes[:8]
    calls = {k: in_turn(runner, how, images, sizes) for k, (runner, how) in variants.items()}
    return interleaved_p50(calls, NMS_TIMING_ITERATIONS)


def _parity(runner: Any, val: ValSet, chosen: Path, load: Any) -> DetectorParity:
    graph_raw = run_raw(load(onnx.load(str(chosen))), val.images)
    found_raw = run_raw(runner, val.images)
    parity = DetectorParity(
        len(val.images), float(np.abs(graph_raw[1] - found_raw[1]).max()),
        float(np.abs(graph_raw[0] - found_raw[0]).max()),
        agreement(val.objects(graph_raw), val.objects(found_raw)),
    )  # fmt: skip
    if (
        parity.max_abs_diff_scores > COMPILED_SCORE_TOLERANCE
        or parity.max_abs_diff_boxes_px > COMPILED_BOX_TOLERANCE_PX
    ):
        raise CheckFailed(
            f"the compiled artifact differs from its graph on val: scores by "
            f"{parity.max_abs_diff_scores:.3g} (limit {COMPILED_SCORE_TOLERANCE}), boxes by "
            f"{parity.max_abs_diff_boxes_px:.3g} px (limit {COMPILED_BOX_TOLERANCE_PX}); no "
            "artifact written"
        )
    return parity


def host_checks(target: Target, out_dir: Path, judge: Any, budget: float
                ) -> dict[str, dict[str, float]] | None:  # fmt: skip
    """The bundle's other graphs (TensorRT 11's FP16-typed ONNX) on the host proxy, each held
    to the guard's rule against FP32 on val (the drop's upper bound within the budget);
    CheckFailed, nothing written, when one is not."""
    from edgetl.backends.onnxruntime.fp16 import quiet

    found = {}
    for what, path, _key in target.compiler.host_checks(out_dir, target.precision, target.profile):
        with quiet():  # ONNX Runtime's CPU runs most FP16 nodes in FP32, and says so per node
            measured, accepted = judge.judge(judge.measure(what, onnx.load(str(path))), budget)
        result = measured.attempt
        say(f"{what} ({path.name}) on the host proxy: val mAP50-95 {result.top1:.4f}, "
            f"{result.verdict}")  # fmt: skip
        if not accepted:
            raise CheckFailed(
                f"{what} ({path.name}): val mAP50-95 {result.top1:.4f} is not shown within "
                f"{budget:g} points of FP32's; no bundle written"
            )
        found[path.name] = {"map50_95": result.top1, "drop_pts": result.drop_pts,
                            "drop_upper_pts": result.drop_upper_pts or 0.0}  # fmt: skip
    return found or None
