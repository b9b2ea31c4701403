"""Which rule should the INT8 guard decide by? Every rung of its ladder measured once, each
rule applied to the same rungs, the kept model judged on test (no choice made on it).

For each dataset and seed: fine-tune efficientnet_lite0, then climb the guard's whole ladder
(plain, head refit, 1, 2, 4, ... float layers) without stopping, recording per rung: val's
discordant counts, flips against FP32 on unlabelled training images the calibration did not
use, test's discordant counts, the time the rung took, and its batch-1 p50. Each rule then
picks the first rung it accepts, as the guard would have:

- point:               val's point estimate of the drop within budget (edgetl before)
- paired-bound:        val's exact upper bound on the drop (core/measures/evidence) within budget
- paired-bound+flips:  that, and the flip rate's upper bound on unlabelled images within it

and the table shows, per rule, how often the kept model's test drop exceeds the budget, its
mean test drop, the rung, p50 against FP32 and the guard's time against `point`'s.

    python tools/guard_rules.py [--data digits,photos,scenes] [--seeds 0,1,2]
        [--image-size 128] [--budget 1.0] [--json FILE] [--from FILE]

`--from` summarizes the rungs a previous run wrote with --json (no climbing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import BUILDERS  # noqa: E402

from edgetl.backends import run_all  # noqa: E402
from edgetl.core.events import install  # noqa: E402
from edgetl.core.measures.evidence import (  # noqa: E402
    DEFAULT_CONFIDENCE,
    DEFAULT_RULE,
    FLIPS_RULE,
    Flips,
    PairedDrop,
    decide,
)
from edgetl.core.measures.metrics import (
    paired_drop,  # noqa: E402
    predicted,  # noqa: E402
)
from edgetl.core.measures.timing import interleaved_p50  # noqa: E402
from edgetl.core.ui import make_console, stdout_console, table  # noqa: E402
from edgetl.quantize.engines import prepare  # noqa: E402
from edgetl.quantize.guard.candidates import Candidates  # noqa: E402
from edgetl.quantize.guard.evaluator import Evaluator, Validation, run_float16  # noqa: E402
from edgetl.quantize.guard.ladder import Steps, climb  # noqa: E402
from edgetl.quantize.guard.ranker import rank_layers, ranking_loader  # noqa: E402
from edgetl.quantize.guard.refit import HeadRefit  # noqa: E402
from edgetl.quantize.guard.report import Measured  # noqa: E402
from edgetl.stages.export.inputs import load_inputs, unlabelled_images  # noqa: E402
from edgetl.stages.export.plan import ExportOptions, resolve_plan  # noqa: E402
from edgetl.stages.export.steps import to_onnx  # noqa: E402
from edgetl.stages.finetune import FinetuneOptions, finetune  # noqa: E402

RULES = ("point", DEFAULT_RULE, FLIPS_RULE)
PER_CLASS = {"photos": 300, "scenes": 100, "patches": 40}  # val of ~360 images or more


@dataclass
class Rung:
    name: str
    val: tuple[int, int, int]  # n, worse, better
    flips: tuple[int, int]  # n, flipped
    test: tuple[int, int, int]
    seconds: float  # measuring it on val (and, where a rule asks, the unlabelled images)
    flip_seconds: float
    p50_ratio: float = float("nan")  # batch-1 p50 / FP32's


@dataclass
class Climb:
    data: str
    seed: int
    rungs: list[Rung]
    fixed_s: float  # FP32 on val, quantization
    unlabelled_s: float  # decoding the unlabelled images and FP32 on them, once


class EveryRung(Evaluator):
    """Measures and records every candidate and accepts none, so the ladder climbs to its end.
    A rung's time runs from the end of the previous judgement (building, refitting, ranking
    and measuring it); its flips and test answers are timed apart or not at all."""

    def attach(self, test: np.ndarray, test_labels: np.ndarray) -> None:
        test_fp32 = run_all(self.fp32_runner, test)
        self.__dict__["record"] = (test, test_labels, test_fp32, [], [])
        self.__dict__["mark"] = time.perf_counter()

    def judge(self, measured: Measured[Any], budget_pts: float) -> tuple[Measured[Any], bool]:
        seconds = time.perf_counter() - self.__dict__["mark"]
        test, labels, test_fp32, rungs, runners = self.__dict__["record"]
        attempt = measured.attempt
        started = time.perf_counter()
        images, reference = self.fp32_unlabelled
        flipped = int((predicted(run_float16(measured.runner, images)) != reference).sum())
        flip_s = time.perf_counter() - started
        on_test = paired_drop(test_fp32, run_all(measured.runner, test), labels)
        val = (self.n, attempt.worse or 0, attempt.better or 0)
        rungs.append(
            Rung(
                attempt.name,
                val,
                (len(images), flipped),
                (on_test.n, on_test.worse, on_test.better),
                seconds,
                flip_s,
            )
        )
        runners.append(measured.runner)
        self.__dict__["mark"] = time.perf_counter()
        return replace(measured, attempt=replace(attempt, verdict="recorded")), False


def climb_all(data: str, seed: int, work: Path, image_size: int) -> Climb:
    run = work / f"run-{seed}"
    finetune(FinetuneOptions(data=data, out=run, image_size=image_size, seed=seed))
    plan = resolve_plan(ExportOptions(run=run, target="cpu", precision="int8", out=work / "unused"))
    recipe = plan.recipe
    inputs = load_inputs(plan)
    graph = to_onnx(plan, inputs, work)
    assert recipe is not None and inputs.calibration is not None
    started = time.perf_counter()
    load = lambda model: plan.measurer.load_onnx(model, plan.measuring)  # noqa: E731
    unlabelled = unlabelled_images(plan, inputs)
    validation = Validation(inputs.val, inputs.val_labels, seed, unlabelled)
    fp32 = prepare(graph.path, work / "prepared.onnx")
    evaluator = EveryRung.for_fp32(validation, load, fp32)
    assert isinstance(evaluator, EveryRung)
    candidates = Candidates.quantize(fp32, inputs.calibration, recipe, plan.compiler.rewrite_int8)
    fixed_s = time.perf_counter() - started
    begun = time.perf_counter()
    evaluator.fp32_unlabelled  # noqa: B018 - decoded and run once, timed here
    unlabelled_s = time.perf_counter() - begun
    ranking = (candidates.build, candidates.quantized_layers(), evaluator)
    steps = Steps(
        candidates.build,
        HeadRefit(plan.run, inputs.splits.train, evaluator).apply,
        lambda: rank_layers(*ranking, ranking_loader(plan.profile), recipe.guard.ranking_samples),
        recipe.guard.max_float_layers,
    )
    evaluator.attach(inputs.test, inputs.test_labels)
    climb(steps, evaluator, 0.0)
    rungs, runners = evaluator.__dict__["record"][3:]
    single = inputs.val[:1]
    calls = {"fp32": lambda: evaluator.fp32_runner.run(single)}
    calls.update({r.name: (lambda x=x: x.run(single)) for r, x in zip(rungs, runners, strict=True)})
    p50 = interleaved_p50(calls, 200)
    for rung in rungs:
        rung.p50_ratio = p50[rung.name] / p50["fp32"]
    return Climb(data, seed, rungs, fixed_s, unlabelled_s)


def kept(climb: Climb, rule: str, budget: float, confidence: float) -> tuple[int | None, float]:
    """The rung `rule` keeps (None: the guard fails) and the guard's time to decide so."""
    seconds, flips_paid = climb.fixed_s, False
    for index, rung in enumerate(climb.rungs):
        seconds += rung.seconds
        paired = PairedDrop(*rung.val)
        if rule == "point":
            accepted = paired.drop_pts <= budget + 1e-6
        else:
            verdict = decide(paired, budget, confidence)
            if rule == FLIPS_RULE and verdict.accepted:
                seconds += rung.flip_seconds + (0.0 if flips_paid else climb.unlabelled_s)
                flips_paid = True
                verdict = decide(paired, budget, confidence, Flips(*rung.flips))
            accepted = verdict.accepted
        if accepted:
            return index, seconds
    return None, seconds


def summarize(climbs: list[Climb], budget: float, confidence: float) -> list[list[str]]:
    rows = []
    for data in sorted({c.data for c in climbs}):
        mine = [c for c in climbs if c.data == data]
        base = [kept(c, "point", budget, confidence)[1] for c in mine]
        for rule in RULES:
            picks = [kept(c, rule, budget, confidence) for c in mine]
            chosen = [
                (c.rungs[i], s) for c, (i, s) in zip(mine, picks, strict=True) if i is not None
            ]
            drops = [PairedDrop(*r.test).drop_pts for r, _ in chosen]
            seconds = float(np.mean([s for _, s in picks]))
            over = sum(d > budget + 1e-6 for d in drops)
            rows.append(
                [
                    data,
                    rule,
                    f"{len(chosen)}/{len(mine)}",
                    f"{over}/{len(chosen)}",
                    f"{np.mean(drops):+.2f}" if drops else "-",
                    f"{max(drops):+.2f}" if drops else "-",
                    ", ".join(r.name for r, _ in chosen) or "-",
                    f"{np.mean([r.p50_ratio for r, _ in chosen]):.2f}x" if chosen else "-",
                    f"{seconds / np.mean(base):.2f}x",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits,photos,scenes")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    parser.add_argument("--json", type=Path, default=None, help="also write every rung here")
    parser.add_argument("--from", dest="source", type=Path, default=None)
    args = parser.parse_args()
    install(make_console())
    climbs: list[Climb] = []
    if args.source is not None:
        for saved in json.loads(args.source.read_text()):
            rungs = [Rung(**r) for r in saved.pop("rungs")]
            climbs.append(Climb(rungs=rungs, **saved))
    with tempfile.TemporaryDirectory(prefix="edgetl-guard-rules-") as scratch:
        for data in args.data.split(",") if args.source is None else []:
            work = Path(scratch) / data
            source = "digits"
            if data != "digits":
                source = str(BUILDERS[data](work / "images", per_class=PER_CLASS[data]))
            for seed in (int(s) for s in args.seeds.split(",")):
                climbs.append(climb_all(source, seed, work, args.image_size))
                climbs[-1].data = data
                if args.json:
                    args.json.write_text(json.dumps([asdict(c) for c in climbs], indent=1))
    stdout_console().print(
        table(
            f"the guard's rules on the same rungs (budget {args.budget:.2f} pts, confidence "
            f"{args.confidence}); test drops of the kept model, {args.image_size}px",
            [
                "data",
                "rule",
                "kept",
                "test drop > budget",
                "mean test drop",
                "worst",
                "rungs kept",
                "p50 / fp32",
                "guard time / point's",
            ],
            summarize(climbs, args.budget, args.confidence),
        )
    )


if __name__ == "__main__":
    main()
