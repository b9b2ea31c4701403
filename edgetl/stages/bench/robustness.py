"""`bench --robustness`: each artifact's accuracy on its reference images under the camera
conditions of a corruption suite, and under an attack file crafted from the public teacher
alone (`edgetl attack`), run by the artifact's own runtime (on a device: there).

Conditions are made once and fed to every artifact that shares the images (the artifacts
of one run), so INT8 and FP32 are compared on the very same pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.backends.artifact import Model
from edgetl.core.artifact.attack_set import AttackSet, pixels_digest
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.metrics import predicted, top1
from edgetl.core.records import BenchResult
from edgetl.core.records.detector import DetectBenchEntry
from edgetl.core.records.robustness import Condition, Robustness
from edgetl.core.ui import heartbeat
from edgetl.stages.bench.corruptions import Suite, corrupt, load_suite
from edgetl.stages.bench.options import BenchOptions

DASH = "-"


# Pixels (N, 3, S, S) uint8 -> the task's measure on them and the share of the clean
# answers kept: how an artifact is scored under one condition.
Score = Callable[[np.ndarray], tuple[float, float]]


@dataclass
class Subject:
    """One artifact to measure: its reference pixels (before normalization), its clean
    measure on them and how it is scored under a condition."""

    name: str
    path: Path
    pixels: np.ndarray
    clean: float
    score: Score
    measure: str = "top-1"


def classifier(
    name: str, path: Path, model: Model, pixels: np.ndarray, labels: np.ndarray,
    clean: np.ndarray,
) -> Subject:  # fmt: skip
    """A classifier artifact: top-1, and the share of images given its clean answer
    (`clean`: the plain bench's top-1 class per image)."""

    def score(images: np.ndarray) -> tuple[float, float]:
        logits = model.logits(model.manifest.preprocess.normalize(images))
        return top1(logits, labels), float((predicted(logits) == clean).mean())

    return Subject(name, path, pixels, float((clean == labels).mean()), score)


def measure(
    subjects: Sequence[Subject], suite_name: str, attack_path: Path | None
) -> dict[str, Robustness]:
    """Every subject's robustness, by name; conditions made once per set of images."""
    suite = load_suite(suite_name)
    attack = AttackSet.load(attack_path) if attack_path is not None else None
    found: dict[str, Robustness] = {}
    groups: dict[str, list[Subject]] = {}
    for subject in subjects:
        groups.setdefault(pixels_digest(subject.pixels), []).append(subject)
    for digest, group in groups.items():
        if attack is not None:
            attack.check_digest(digest, group[0].path)
        found.update(_measure_group(group, suite, attack))
    return found


def _measure_group(
    group: list[Subject], suite: Suite, attack: AttackSet | None
) -> dict[str, Robustness]:
    pixels = group[0].pixels
    corruptions: dict[str, list[Condition]] = {s.name: [] for s in group}
    attacked: dict[str, list[Condition]] = {s.name: [] for s in group}
    count = sum(1 for _ in suite.conditions())
    for index, (family, severity) in enumerate(suite.conditions(), 1):
        with heartbeat(f"robustness: {family} {severity} ({index}/{count})"):
            images = corrupt(suite, family, severity, pixels)
            digest = pixels_digest(images)
            for subject in group:
                corruptions[subject.name].append(
                    _condition(subject, family, severity, images, digest)
                )
    if attack is not None:
        method = attack.info.method.split(" ", 1)[0].lower()  # "pgd", "fgsm"
        for epsilon, images in zip(attack.epsilons, attack.images, strict=True):
            with heartbeat(f"robustness: {method} at {epsilon:g}/255"):
                digest = pixels_digest(images)
                for subject in group:
                    attacked[subject.name].append(
                        _condition(subject, method, epsilon, images, digest)
                    )
    return {
        s.name: summarize(s, suite, corruptions[s.name], attacked[s.name], attack) for s in group
    }


def _condition(
    subject: Subject, family: str, level: float, images: np.ndarray, digest: str
) -> Condition:
    score, kept = subject.score(images)
    return Condition(family, float(level), round(score, 6), round(kept, 6), digest)


def summarize(
    subject: Subject,
    suite: Suite,
    corruptions: list[Condition],
    attacked: list[Condition],
    attack: AttackSet | None,
) -> Robustness:
    clean = subject.clean
    families: dict[str, list[float]] = {}
    for condition in corruptions:
        families.setdefault(condition.family, []).append(condition.score)
    mean = float(np.mean([c.score for c in corruptions])) if corruptions else None
    relative = None if mean is None or clean == 0 else round(mean / clean, 4)
    robustness = Robustness(
        n=len(subject.pixels),
        clean=round(clean, 6),
        measure=subject.measure,
        suite=f"{suite.name} ({suite.source})",
        seed=suite.seed,
        corruptions=corruptions,
        families={name: round(float(np.mean(v)), 6) for name, v in families.items()},
        mean_corrupted=None if mean is None else round(mean, 6),
        relative=relative,
        attack=attacked,
        attack_info=attack.info if attack is not None else None,
    )
    finding = in_words(robustness)
    say(f"{subject.name}: {finding}")
    return replace(robustness, finding=finding)


def in_words(robustness: Robustness) -> str:
    """The finding a user reads: what the attack did (beside a model from scratch) and what
    the camera conditions cost."""
    parts = []
    clean = robustness.clean
    if robustness.attack:
        worst = robustness.attack[-1]
        others = ", ".join(f"{c.level:g}/255: {c.score:.1%}" for c in robustness.attack[:-1])
        text = (f"an attack built from the public backbone's weights alone drops this model "
                f"from {clean:.1%} to {worst.score:.1%} at {worst.level:g}/255")  # fmt: skip
        parts.append(text + (f" ({others})" if others else ""))
        scratch = robustness.attack_info.scratch if robustness.attack_info else {}
        key = f"{worst.level:g}"
        if "clean" in scratch and key in scratch:
            parts.append(f"a model trained from scratch on the same split (no teacher) goes "
                         f"from {scratch['clean']:.1%} to {scratch[key]:.1%} under the same "
                         "images")  # fmt: skip
    if robustness.mean_corrupted is not None and robustness.families:
        family, lowest = min(robustness.families.items(), key=lambda item: item[1])
        parts.append(f"under camera conditions it keeps {robustness.relative or 0:.0%} of its "
                     f"clean {robustness.measure} ({robustness.mean_corrupted:.1%} mean over "
                     f"{len(robustness.corruptions)} conditions; worst: {family} "
                     f"{lowest:.1%})")  # fmt: skip
    return "; ".join(parts)


def table(
    results: Sequence[BenchResult | DetectBenchEntry],
) -> tuple[list[str], list[list[str]]] | None:
    """Artifacts side by side (INT8 beside FP32 shows what quantization cost): clean top-1,
    each family's mean over its severities, the mean and its share of clean, each attack
    epsilon, and a model from scratch under the same attack. None: nothing measured."""
    measured = [r for r in results if r.robustness is not None]
    if not measured:
        return None
    found = [r.robustness for r in measured if r.robustness is not None]
    columns = [f"{found[0].measure} under", *(r.name for r in measured)]
    body = [["clean", *(f"{r.clean:.1%}" for r in found)]]
    for family in found[0].families:
        body.append([family, *(_pct(r.families.get(family)) for r in found)])
    body.append(["mean corrupted", *(_pct(r.mean_corrupted) for r in found)])
    body.append(["  share of clean", *(_pct(r.relative, 0) for r in found)])
    for index, condition in enumerate(found[0].attack):
        cells = [_pct(r.attack[index].score) if len(r.attack) > index else DASH for r in found]
        body.append([f"attack {condition.level:g}/255", *cells])
    info = found[0].attack_info
    if info is not None and info.scratch:
        for key, value in info.scratch.items():
            label = "clean" if key == "clean" else f"{key}/255"
            body.append([f"  from scratch, {label}", *([f"{value:.1%}"] * len(found))])
    return columns, body


def _pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}%}"


def check_inputs(opts: BenchOptions) -> None:
    """--robustness's inputs, checked before anything is measured (exit 2)."""
    for option, value in (("--limit", opts.limit), ("--data", opts.data)):
        if value is not None:
            raise EdgetlError(
                f"--robustness with {option}: robustness is measured on each artifact's whole "
                f"reference set (an attack file is crafted from it); leave out {option}"
            )
    if opts.max_robustness_drop < 0:
        raise EdgetlError(f"--max-robustness-drop {opts.max_robustness_drop}: give points >= 0")
    if opts.attack is not None and not opts.attack.is_file():
        raise EdgetlError(f"--attack {opts.attack}: no such file; make one with `edgetl attack`")
    load_suite(opts.corruptions)
