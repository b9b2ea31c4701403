"""Ranking quantized layers by how much keeping each one float brings the logits back to FP32."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from edgetl.backends import get_compiler, run_all
from edgetl.core.data.splitting import stratified_sample
from edgetl.core.measures.metrics import top1
from edgetl.core.targets import TargetProfile
from edgetl.core.ui import progress
from edgetl.quantize.guard.evaluator import Evaluator, LoadOnnx
from edgetl.quantize.guard.report import Ranked, Ranking

# Ranking builds one candidate per quantized layer (about 60 for EfficientNet-Lite0): ONNX
# Runtime builds a session from memory in tens of milliseconds, where a target's own
# compiler (OpenVINO, TensorRT) takes seconds. The attempts that decide use the target's.
RANKING_BACKEND = "onnxruntime"


def ranking_loader(profile: TargetProfile) -> LoadOnnx:
    backend = get_compiler(RANKING_BACKEND)
    return lambda model: backend.load_onnx(model, profile)


def rank_layers(
    build: Callable[[list[str]], onnx.ModelProto],
    candidates: list[str],
    evaluator: Evaluator,
    rank_load: LoadOnnx,
    samples: int,
) -> Ranking:
    """Layers by the share of the INT8 model's logit error (vs FP32) that goes away with each
    alone in float, most sensitive first, each with its top-1 on the ranking's images.

    Ranking compiles one candidate per layer, so it runs on `rank_load` (ONNX Runtime in
    memory, fast to build) over a stratified subset of the validation images; the attempts
    that decide are measured by the evaluator on the target's runtime.
    """
    validation = evaluator.validation
    picked = stratified_sample(validation.labels, samples, validation.seed)
    images = validation.images[picked]
    reference = evaluator.fp32_logits[picked]
    labels = validation.labels[picked]

    def error(model: onnx.ModelProto) -> tuple[float, float]:
        logits = run_all(rank_load(model), images)
        return float(np.mean((logits - reference) ** 2)), top1(logits, labels)

    base, plain = error(build([]))
    scores = []
    with progress() as bar:
        task = bar.add_task("rank layer sensitivity", total=len(candidates), info="")
        for name in candidates:
            left, found = error(build([name]))
            scores.append(Ranked(name, (base - left) / base if base > 0 else 0.0, found))
            bar.update(task, advance=1, info=name[-40:])
    ordered = sorted(scores, key=lambda item: -item.score)
    return Ranking(ordered, len(images), top1(reference, labels), plain, "top1")
