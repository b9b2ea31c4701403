"""The accuracy guard: quantize, measure, and restore accuracy until the budget holds.

Steps, each measured on the run's validation images with the target's runtime:
1. plain: the engine's INT8 model as it comes.
2. head refit: the backbone is frozen, so the head can be re-trained on features of the
   *quantized* backbone (warm-started from the run's head); kept only when it helps.
3. float layers: every quantized layer is ranked by how much keeping it alone in float
   brings the logits back towards FP32; the top 1, 2, 4, ... are kept in float until the
   drop is within budget or the recipe's max_float_layers is reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from rich.console import Console

from edgetl.backends import Runner, run_all
from edgetl.core.dataset import ImageSet, stratified_sample
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.metrics import agreement, drop_pts, top1, within_budget
from edgetl.core.ui import image_count, progress, table
from edgetl.quantize import qdq
from edgetl.quantize.calibration import CalibrationSet
from edgetl.quantize.engines import ENGINES, float_node_names
from edgetl.quantize.recipes import Recipe
from edgetl.train.loop import HeadTraining, train_head
from edgetl.train.model import Run

REFIT_MAX_IMAGES = 2000  # training images whose quantized features re-fit the head


@dataclass
class Attempt:
    name: str
    top1: float
    drop_pts: float
    agreement: float
    max_abs_diff: float
    float_layers: list[str] = field(default_factory=list)
    head_refit: bool = False

    def row(self, n: int) -> list[str]:
        return [
            self.name,
            f"{self.top1:.2%}",
            f"{self.drop_pts:+.2f} ({image_count(self.drop_pts, n)})",
            f"{self.agreement:.2%}",
            f"{self.max_abs_diff:.3g}",
        ]


@dataclass
class GuardReport:
    fp32_top1: float
    n: int
    budget_pts: float
    attempts: list[Attempt]
    sensitivities: list[tuple[str, float]]
    quantize_s: float
    guard_s: float

    @property
    def chosen(self) -> Attempt:
        return self.attempts[-1]

    @property
    def passed(self) -> bool:
        return within_budget(self.chosen.drop_pts, self.budget_pts)

    def to_dict(self) -> dict[str, Any]:
        chosen = self.chosen
        return {
            "fp32_top1": self.fp32_top1,
            "int8_top1": chosen.top1,
            "drop_pts": round(chosen.drop_pts, 4),
            "budget_pts": self.budget_pts,
            "n": self.n,
            "agreement": chosen.agreement,
            "max_abs_diff": chosen.max_abs_diff,
            "float_layers": chosen.float_layers,
            "head_refit": chosen.head_refit,
            "attempts": [asdict(a) for a in self.attempts],
            "sensitivities": [{"layer": n, "score": s} for n, s in self.sensitivities[:20]],
            "quantize_s": round(self.quantize_s, 2),
            "guard_s": round(self.guard_s, 2),
        }


LoadOnnx = Callable[[onnx.ModelProto], Runner]
Rewrite = Callable[[onnx.ModelProto], onnx.ModelProto]


@dataclass
class Evaluation:
    """Validation images (every guard decision is made on them) and the runtimes that measure.

    `load` is the target's runtime, or the host proxy its profile names, so the budget holds
    where the model will run; `rewrite` is the target backend's own QDQ rewrite; `rank` runs
    the many layer-ranking candidates (ONNX Runtime in memory: fast to build).
    """

    images: np.ndarray
    labels: np.ndarray
    load: LoadOnnx
    rewrite: Rewrite
    rank: LoadOnnx
    seed: int = 0
    # Set by measure_fp32 and by each attempt; kept so the chosen model is not run again.
    fp32_runner: Runner = field(init=False)
    fp32_logits: np.ndarray = field(init=False)
    last_runner: Runner = field(init=False)
    last_logits: np.ndarray = field(init=False)

    def measure_fp32(self, model: onnx.ModelProto) -> None:
        self.fp32_runner = self.load(model)
        self.fp32_logits = run_all(self.fp32_runner, self.images)

    @property
    def fp32_top1(self) -> float:
        return top1(self.fp32_logits, self.labels)

    def attempt(self, name: str, model: onnx.ModelProto, **details: Any) -> Attempt:
        self.last_runner = self.load(model)
        logits = self.last_logits = run_all(self.last_runner, self.images)
        found = top1(logits, self.labels)
        return Attempt(
            name=name,
            top1=found,
            drop_pts=drop_pts(self.fp32_top1, found),
            agreement=agreement(logits, self.fp32_logits),
            max_abs_diff=float(np.abs(logits - self.fp32_logits).max()),
            **details,
        )


def quantize_with_guard(
    prepared: onnx.ModelProto,
    calib: CalibrationSet,
    recipe: Recipe,
    run: Run,
    train: ImageSet,
    evaluation: Evaluation,
    budget_pts: float,
    console: Console,
) -> tuple[onnx.ModelProto, GuardReport]:
    """The INT8 model that meets the budget, and what was tried; GuardFailed when none does.

    The model returned is always the one `evaluation` measured last (its runner and logits).
    """
    started = time.perf_counter()
    engine = ENGINES[recipe.engine]
    console.print(
        f"quantizing with {recipe.name} ({recipe.engine}, {recipe.method}) on "
        f"{len(calib.files)} calibration images"
    )
    recipe_float = float_node_names(prepared, recipe)
    raw = engine(prepared, calib.images, recipe, recipe_float)
    quantize_s = time.perf_counter() - started

    def build(float_layers: list[str]) -> onnx.ModelProto:
        model = qdq.keep_float(raw, prepared, float_layers) if float_layers else qdq.copy_model(raw)
        return evaluation.rewrite(model)

    attempts: list[Attempt] = []
    sensitivities: list[tuple[str, float]] = []

    def report() -> GuardReport:
        return GuardReport(
            evaluation.fp32_top1,
            len(evaluation.labels),
            budget_pts,
            attempts,
            sensitivities,
            quantize_s,
            time.perf_counter() - started,
        )

    n = len(evaluation.labels)

    def done(attempt: Attempt) -> bool:
        attempts.append(attempt)
        console.print(
            f"  {attempt.name}: INT8 top-1 {attempt.top1:.2%} (FP32 {evaluation.fp32_top1:.2%}, "
            f"drop {attempt.drop_pts:+.2f} pts = {image_count(attempt.drop_pts, n)} "
            f"val images, budget {budget_pts:.2f})"
        )
        return within_budget(attempt.drop_pts, budget_pts)

    model = build([])
    if done(evaluation.attempt("plain", model)):
        return model, report()

    refit = None
    if recipe.guard.head_refit:
        refit = HeadRefit(run, train, evaluation, console)
        refitted = refit.apply(model)
        attempt = evaluation.attempt("head refit", refitted, head_refit=True)
        better = attempt.top1 > attempts[-1].top1
        if done(attempt):
            return refitted, report()
        if not better:
            console.print("  head refit did not help; not kept")
            refit = None

    if recipe.guard.max_float_layers < 1:
        raise GuardFailed(report())
    in_prepared = {node.name for node in prepared.graph.node}
    candidates = [n for n in qdq.quantized_nodes(raw) if n in in_prepared and n not in recipe_float]
    sensitivities = rank_layers(
        build, candidates, evaluation, recipe.guard.ranking_samples, console
    )
    for count in _ladder(recipe.guard.max_float_layers):
        layers = [name for name, _ in sensitivities[:count]]
        model = build(layers)
        if refit is not None:
            model = refit.apply(model)
        label = f"{len(layers)} float layer{'s' if len(layers) > 1 else ''}"
        if refit is not None:
            label += " + head refit"
        if done(
            evaluation.attempt(label, model, float_layers=layers, head_refit=refit is not None)
        ):
            return model, report()
    raise GuardFailed(report())


class GuardFailed(CheckFailed):
    def __init__(self, report: GuardReport):
        self.report = report
        super().__init__(
            f"INT8 misses the accuracy budget: best drop "
            f"{min(a.drop_pts for a in report.attempts):.2f} pts > --max-accuracy-drop "
            f"{report.budget_pts:.2f}; no artifact written. Try more or other calibration "
            "images (--calib-data), another --recipe, a larger guard.max_float_layers in "
            "the recipe, or --precision fp32"
        )

    def tables(self) -> list[Any]:
        attempts = table(
            "INT8 attempts",
            ["attempt", "top-1", "drop (pts)", "agreement", "max |diff|"],
            [a.row(self.report.n) for a in self.report.attempts],
        )
        sensitivity = table(
            "most sensitive layers (logit error removed by keeping the layer float)",
            ["layer", "score"],
            [(name, f"{score:.3g}") for name, score in self.report.sensitivities[:15]],
        )
        return [attempts, sensitivity]


def rank_layers(
    build: Any,
    candidates: list[str],
    evaluation: Evaluation,
    samples: int,
    console: Console,
) -> list[tuple[str, float]]:
    """Layers by how much of the INT8 model's logit error (vs FP32) goes away with each in float.

    Ranking compiles one candidate per layer, so it runs on `evaluation.rank` (ONNX Runtime
    in memory, fast to build) over a stratified subset of the validation images; the
    attempts that decide are measured on the target's runtime.
    """
    picked = stratified_sample(evaluation.labels, samples, evaluation.seed)
    images = evaluation.images[picked]
    reference = evaluation.fp32_logits[picked]

    def error(model: onnx.ModelProto) -> float:
        logits = run_all(evaluation.rank(model), images)
        return float(np.mean((logits - reference) ** 2))

    base = error(build([]))
    scores = []
    with progress(console) as bar:
        task = bar.add_task("rank layer sensitivity", total=len(candidates), info="")
        for name in candidates:
            scores.append((name, (base - error(build([name]))) / base if base > 0 else 0.0))
            bar.update(task, advance=1, info=name[-40:])
    return sorted(scores, key=lambda item: -item[1])


class HeadRefit:
    """Re-train the run's head on features of a quantized backbone and write it into the graph."""

    def __init__(self, run: Run, train: ImageSet, evaluation: Evaluation, console: Console):
        train = train.sample(REFIT_MAX_IMAGES, run.seed)
        # float16 halves the memory (2000 images at 224 px: 0.6 GB); runners get float32.
        self.train_images = np.concatenate(
            [b.astype(np.float16) for b, _ in train.batches(run.preprocess, 64)]
        )
        self.train_labels = train.labels
        self.run = run
        self.evaluation = evaluation
        self.console = console

    def apply(self, model: onnx.ModelProto) -> onnx.ModelProto:
        features = self.evaluation.load(_features_model(model))
        train_x = torch.from_numpy(_features(features, self.train_images))
        val_x = torch.from_numpy(_features(features, self.evaluation.images))
        head = self.run.head()
        head.set_feature_stats(train_x)
        info = self.run.info.train
        settings = HeadTraining(info.epochs, info.lr, info.batch_size, info.seed, info.patience)
        train_head(
            head,
            train_x,
            torch.from_numpy(self.train_labels),
            val_x,
            torch.from_numpy(self.evaluation.labels),
            settings,
            self.console,
        )
        return _with_head(model, head)


def _features(runner: Runner, images: np.ndarray, step: int = 64) -> np.ndarray:
    return np.concatenate(
        [
            run_all(runner, images[i : i + step].astype(np.float32)).astype(np.float32)
            for i in range(0, len(images), step)
        ]
    )


def _features_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with the head's input (backbone features) as its only output."""
    consumer = next((n for n in model.graph.node if "head.feature_mean" in n.input), None)
    if consumer is None:
        raise EdgetlError("head refit: no head.feature_mean in the graph; not an edgetl model")
    feature = next(name for name in consumer.input if name != "head.feature_mean")
    result = qdq.copy_model(model)
    del result.graph.output[:]
    result.graph.output.append(
        onnx.helper.make_tensor_value_info(feature, onnx.TensorProto.FLOAT, None)
    )
    return qdq.prune(result)


def _with_head(model: onnx.ModelProto, head: torch.nn.Module) -> onnx.ModelProto:
    result = qdq.copy_model(model)
    initializers = {init.name: init for init in result.graph.initializer}
    for key, value in head.state_dict().items():
        name = f"head.{key}"
        if name not in initializers:
            raise EdgetlError(
                f"head refit: {name} is not a float initializer of the INT8 graph; not an "
                "edgetl model"
            )
        initializers[name].CopyFrom(onnx.numpy_helper.from_array(value.numpy(), name))
    return result


def _ladder(limit: int) -> list[int]:
    counts, count = [], 1
    while count < limit:
        counts.append(count)
        count *= 2
    return [*counts, limit] if limit > 0 else []
