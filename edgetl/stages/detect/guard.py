"""The INT8 guard for a detector: every candidate judged by its val mAP50-95 against FP32's,
accepted when the drop's paired-bootstrap upper bound at `confidence` fits the budget
(core/measures/map_evidence.py), never on the point estimate alone.

The ladder: plain INT8 with the decode in float (always: PR #7516's +0.6 mAP); then the
head's last layers (the class and box convolutions) in float; then those and the 1, 2, 4, ...
quantized layers whose float copy each brings back the most mAP on val (ranked one by one on
ONNX Runtime, on a subset of val).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import onnx

from edgetl.backends.base import NamedRunner
from edgetl.core.data.detection import DetectionSet
from edgetl.core.events import say
from edgetl.core.letterbox import Letterbox
from edgetl.core.measures.detection import Objects, agreement, coco_map
from edgetl.core.measures.map_evidence import map_drop
from edgetl.core.postprocess import NmsSettings, detections
from edgetl.core.records import Attempt
from edgetl.core.ui import progress
from edgetl.quantize.guard.candidates import Candidates
from edgetl.quantize.guard.ladder import float_layer_counts
from edgetl.quantize.guard.report import Measured, Ranked, Ranking

Load = Callable[[onnx.ModelProto], Any]  # a model in memory -> a NamedRunner
HEAD_OUTPUTS = ("/head/cls_out/", "/head/box_out/")  # the head's last layers, by node name
RANK_IMAGES = 64  # val images each layer's float copy is ranked on


def run_raw(runner: NamedRunner, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes, scores = [], []
    step = runner.batch_size or 16
    for start in range(0, len(images), step):
        found = runner.named(images[start : start + step])
        boxes.append(found["boxes"])
        scores.append(found["scores"])
    return np.concatenate(boxes), np.concatenate(scores)


@dataclass(frozen=True)
class ValSet:
    """Val's letterboxed images, their boxes, and how outputs become detections."""

    images: np.ndarray
    truth: DetectionSet
    letterbox: Letterbox
    nms: NmsSettings

    def objects(
        self, raw: tuple[np.ndarray, np.ndarray], limit: int | None = None
    ) -> list[Objects]:
        sizes = self.truth.sizes[:limit]
        return [
            detections(b, s, self.nms, self.letterbox, size)
            for b, s, size in zip(raw[0], raw[1], sizes, strict=False)
        ]


@dataclass
class MapJudge:
    """FP32's detections on val, and what measures and judges every candidate against them."""

    val: ValSet
    load: Load
    fp32_raw: tuple[np.ndarray, np.ndarray]
    fp32: list[Objects]
    confidence: float

    @property
    def fp32_map(self) -> float:
        truth = self.val.truth
        return coco_map(truth.objects, self.fp32, truth.sizes, len(truth.classes)).map50_95

    def measure(self, name: str, model: onnx.ModelProto, **details: Any) -> Measured[Any]:
        runner = self.load(model)
        raw = run_raw(runner, self.val.images)
        found = self.val.objects(raw)
        truth = self.val.truth
        drop = map_drop(truth.objects, self.fp32, found, truth.sizes, len(truth.classes),
                        self.confidence)  # fmt: skip
        attempt = Attempt(
            name=name, top1=round(drop.found, 5), drop_pts=round(drop.drop_pts, 4),
            agreement=agreement(self.fp32, found) or 0.0,
            max_abs_diff=float(np.abs(raw[1] - self.fp32_raw[1]).max()),
            drop_upper_pts=round(drop.upper_pts, 4), confidence=self.confidence, **details,
        )  # fmt: skip
        return Measured(attempt, model, runner, raw[1])

    def judge(self, measured: Measured[Any], budget_pts: float) -> tuple[Measured[Any], bool]:
        bound = measured.attempt.drop_upper_pts or 0.0
        accepted = bound <= budget_pts
        verdict = (
            f"accepted: bound {bound:.2f} <= {budget_pts:g}"
            if accepted
            else f"refused: bound {bound:.2f} > {budget_pts:g}"
        )
        return replace(measured, attempt=replace(measured.attempt, verdict=verdict)), accepted


class Judge(Protocol):
    confidence: float

    @property
    def fp32_map(self) -> float: ...

    def measure(self, name: str, model: onnx.ModelProto, **details: Any) -> Measured[Any]: ...

    def judge(self, measured: Measured[Any], budget_pts: float) -> tuple[Measured[Any], bool]: ...


@dataclass(frozen=True)
class Climb:
    chosen: Measured[Any] | None
    attempts: list[Attempt]
    ranking: Ranking | None


def climb(
    candidates: Candidates,
    judge: Judge,
    budget: float,
    ranked: Callable[[list[str]], Ranking],
    max_float: int,
    fp16: Callable[[onnx.ModelProto, list[str]], onnx.ModelProto] | None = None,
) -> Climb:
    """Plain, head outputs float, then ranked layers too (`ranked(base)`: the layers beyond
    `base` most sensitive first); the first candidate the rule accepts. `fp16` (a target
    that runs FP16 well): the accepted candidate's float layers then tried in FP16, kept
    when the rule accepts that too (mixed precision); the decode stays FP32."""
    attempts: list[Attempt] = []
    head = [n for n in candidates.quantized_layers() if any(p in n for p in HEAD_OUTPUTS)]

    def tried(name: str, model: onnx.ModelProto, layers: list[str], half: bool = False
              ) -> Measured[Any] | None:  # fmt: skip
        measured, ok = judge.judge(judge.measure(name, model, float_layers=layers,
                                                 float16=half), budget)  # fmt: skip
        attempts.append(measured.attempt)
        a = measured.attempt
        say(f"  {name}: val mAP50-95 {a.top1:.4f} (FP32 {judge.fp32_map:.4f}, drop "
            f"{a.drop_pts:+.2f} pts; at {judge.confidence:.0%} at most "
            f"{a.drop_upper_pts:.2f}): {a.verdict}")  # fmt: skip
        return measured if ok else None

    def done(chosen: Measured[Any], order: Ranking | None) -> Climb:
        layers = list(chosen.attempt.float_layers)
        if fp16 is None or not layers:
            return Climb(chosen, attempts, order)
        name = f"{chosen.attempt.name} in FP16"
        if half := tried(name, fp16(chosen.model, layers), layers, half=True):
            return Climb(half, attempts, order)
        attempts[-2], attempts[-1] = attempts[-1], attempts[-2]  # the kept attempt ends the list
        return Climb(chosen, attempts, order)

    for name, layers in (("plain (decode float)", []), ("head outputs float", head)):
        if chosen := tried(name, candidates.build(layers), layers):
            return done(chosen, None)
    order = ranked(head)
    for count in float_layer_counts(max_float):
        extra = order.names(count)
        layers = head + extra
        if chosen := tried(f"head outputs + {len(extra)} float", candidates.build(layers),
                           layers):  # fmt: skip
            return done(chosen, order)
    return Climb(None, attempts, order)


def rank(candidates: Candidates, judge: MapJudge, base: list[str], load: Load) -> Ranking:
    """Quantized layers by the val mAP50-95 their float copy brings back (on RANK_IMAGES val
    images, on ONNX Runtime in memory), most first, layers reading one tensor ranked as one
    unit (siblings); equal gains (every candidate at mAP 0
    when INT8 wrecked the model) are ordered by the share of the scores' error against FP32
    each removes."""
    val = judge.val
    images = val.images[:RANK_IMAGES]
    truth = val.truth.subset(list(range(len(images))))
    reference = judge.fp32_raw[1][: len(images)]

    def score(layers: list[str]) -> tuple[float, float]:
        raw = run_raw(load(candidates.build(layers)), images)
        found = val.objects(raw, len(images))
        value = coco_map(truth.objects, found, truth.sizes, len(truth.classes)).map50_95
        return value, float(np.mean((raw[1] - reference) ** 2))

    start, error = score(base)
    scores: list[tuple[list[str], float, float, float]] = []
    units = siblings(candidates, [n for n in candidates.quantized_layers() if n not in base])
    with progress() as bar:
        task = bar.add_task("rank layers by val mAP", total=len(units), info="")
        for unit in units:
            value, left = score([*base, *unit])
            removed = (error - left) / error if error > 0 else 0.0
            scores.append((unit, round(value - start, 3), removed, value))
            bar.update(task, advance=1, info=unit[0][-40:])
    ordered = sorted(scores, key=lambda item: (-item[1], -item[2]))
    layers = [Ranked(name, gain, value) for unit, gain, _, value in ordered for name in unit]
    fp32 = coco_map(truth.objects, judge.fp32[: len(images)], truth.sizes,
                    len(truth.classes)).map50_95  # fmt: skip
    return Ranking(layers, len(images), fp32, start, "map50_95")


def siblings(candidates: Candidates, layers: list[str]) -> list[list[str]]:
    """`layers` grouped by the tensor they read: one quantizer feeds them all, so they are
    put back in float together (a neck level read by both towers: either alone gains
    nothing while the other still reads the tensor INT8 wrecked)."""
    reads = {node.name: node.input[0] for node in candidates.fp32.graph.node if node.input}
    groups: dict[str, list[str]] = {}
    for name in layers:
        groups.setdefault(reads.get(name, name), []).append(name)
    return list(groups.values())
