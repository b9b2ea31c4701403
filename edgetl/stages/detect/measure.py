"""`edgetl bench` of detector artifacts: mAP on a detection set (the run's own split, or any
YOLO or COCO folder) and batch-1 latency with postprocessing, NMS's share shown; `--baseline`
fails an artifact whose mAP or p50 regressed. Device side: no torch."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.backends.detector import DetectorModel, Timed, detect, load_detector
from edgetl.core.artifact.detection_reference import DetectionReference, fp32_answers
from edgetl.core.artifact.signing import trusted_keys
from edgetl.core.data.detection_splits import load_detection
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.fields import Source, read_fields
from edgetl.core.files import read_json
from edgetl.core.images import read_image
from edgetl.core.measures.answers import (
    ANSWER_SCORE,
    answer_rows,
    as_objects,
    confident_agreement,
    same_answers,
)
from edgetl.core.measures.detection import Objects, coco_map
from edgetl.core.measures.timing import summarize
from edgetl.core.records.detector import (
    DETECT_BENCH_SCHEMA,
    DetectBenchEntry,
    DetectBenchReport,
)
from edgetl.core.ui import progress
from edgetl.stages.bench.gate import compare_robustness
from edgetl.stages.bench.names import unique_names
from edgetl.stages.bench.options import BenchOptions, CompareOptions
from edgetl.stages.detect import reports


@dataclass(frozen=True)
class Measured:
    """What a detector is measured on: each image as the model's input, its size and boxes."""

    source: str
    split: str
    classes: list[str]
    sizes: list[tuple[int, int]]
    truth: list[Objects]
    input: Callable[[int], np.ndarray]  # image i -> its (1, 3, S, S) letterboxed input
    keys: list[str]  # each image's key (its path in the set)
    # the run's test images (or a reference set of them): each artifact's reference set may
    # hold FP32 PyTorch's detections of them (its own run's FP32, not the first artifact's)
    of_the_run: bool = False

    def __len__(self) -> int:
        return len(self.sizes)


def bench_detectors(opts: BenchOptions) -> DetectBenchReport:
    from edgetl.stages.detect import robustness

    if opts.measures_robustness:
        robustness.check(opts)
    keys = trusted_keys(opts.trust)
    models = [load_detector(path, opts.threads, keys) for path in opts.artifacts]
    measured = detection_data(models[0], opts)
    results = [_measure(model, measured, opts) for model in models]
    names = unique_names([model.manifest.name for model in models], [m.path for m in models])
    for entry, name in zip(results, names, strict=True):
        entry.name = name
    if opts.measures_robustness:
        robustness.add_robustness(models, results, opts)
    report = DetectBenchReport(measured.source, measured.split, results)
    if opts.baseline is not None:
        report.failures = gate(report, read_report(opts.baseline), opts)
    reports.write(report, opts)
    return report


def detection_data(model: DetectorModel, opts: BenchOptions | CompareOptions) -> Measured:
    """--data's split, the run's own split (default test), or the artifact's reference set
    where the run's data is not on this machine (a device)."""
    run_data = model.manifest.run.data
    if opts.data:
        splits = load_detection(Path(opts.data))
    elif Path(run_data.source).exists():
        splits = run_data.load()
    elif model.manifest.reference is not None and opts.split in (None, "test"):
        return _reference(model, opts)
    else:
        raise EdgetlError(
            f"{run_data.source}: the run's data is not on this machine and the artifact has no "
            "reference set; give --data with a YOLO or COCO folder to measure on"
        )
    split = opts.split or "test"
    part = splits.part(split)
    if opts.limit is not None:
        part = part.subset(list(range(min(opts.limit, len(part)))))
    if split != "test":
        say(f"[yellow]note:[/] measuring on {split}: choices were made on it; test is the "
            "split no choice was made on")  # fmt: skip
    letterbox = model.letterbox
    return Measured(splits.source, split, part.classes, part.sizes, part.objects,
                    lambda i: letterbox(read_image(part.root / part.keys[i]))[None],
                    list(part.keys), not opts.data and split == "test")  # fmt: skip


def _reference_fp32(model: DetectorModel, keys: list[str]) -> list[Objects] | None:
    """FP32 PyTorch's detections of exactly these images (in this order), from the
    artifact's reference set (its run's test images), or None when it holds other images:
    each artifact is agreed with its own run's FP32."""
    if model.manifest.reference is None:
        return None
    stored, fp32 = fp32_answers(model.path / str(model.manifest.reference))
    return fp32[: len(keys)] if stored[: len(keys)] == keys else None


def _reference(model: DetectorModel, opts: BenchOptions | CompareOptions) -> Measured:
    path = model.path / str(model.manifest.reference)
    reference = DetectionReference.load(path)
    count = len(reference) if opts.limit is None else min(opts.limit, len(reference))
    images = model.letterbox.normalize(reference.images[:count])
    say(f"measuring on the artifact's reference set ({count} test images of the run; its data "
        "is not on this machine)")  # fmt: skip
    return Measured(str(path), "reference", reference.classes, reference.sizes[:count],
                    reference.truth[:count], lambda i: images[i : i + 1],
                    reference.keys[:count], True)  # fmt: skip


def objects(model: DetectorModel, measured: Measured) -> list[Objects]:
    """The model's detections of each image measured on, a progress bar over them."""
    found = []
    with progress() as bar:
        task = bar.add_task(f"mAP {model.manifest.name}", total=len(measured), info="")
        for i, size in enumerate(measured.sizes):
            found += detect(model.runner, measured.input(i), [size], model.manifest)
            bar.advance(task)
    return found


def _measure(model: DetectorModel, measured: Measured, opts: BenchOptions) -> DetectBenchEntry:
    manifest = model.manifest
    found = objects(model, measured)
    scores = coco_map(measured.truth, found, measured.sizes, len(measured.classes))
    graph, nms = _latency(model, measured, opts)
    total = summarize(graph + nms)
    entry = DetectBenchEntry(
        manifest.name, str(model.path), manifest.backend, manifest.device, manifest.precision,
        manifest.backend if model.proxy else None, len(measured),
        sum(len(o) for o in measured.truth), round(scores.map50_95, 5), round(scores.map50, 5),
        [None if v is None else round(v, 5) for v in scores.per_class], total,
        round(float(np.median(graph)), 4), round(float(np.median(nms)), 4), manifest.nms_where,
    )  # fmt: skip
    entry.answers = answer_rows(found)
    fp32 = _reference_fp32(model, measured.keys) if measured.of_the_run else None
    if fp32 is not None:
        agreed = confident_agreement(fp32, found)
        entry.agreement = None if agreed is None else round(agreed, 4)
    return entry


def _latency(model: DetectorModel, measured: Measured, opts: BenchOptions
             ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Batch-1 milliseconds in the graph and after it (NumPy NMS, or with NMS in the graph
    only the mapping back), per sample, over the set's first images in turn (real
    detections: NMS's work depends on them)."""
    count = min(16, len(measured))
    inputs = [measured.input(i) for i in range(count)]
    graph, after = [], []
    for i in range(opts.warmup + opts.iterations):
        k = i % count
        timed = Timed()
        detect(model.runner, inputs[k], [measured.sizes[k]], model.manifest, timed)
        if i >= opts.warmup:
            graph.append(timed.graph_s * 1e3)
            after.append(timed.nms_s * 1e3)
    return np.asarray(graph), np.asarray(after)


def read_report(path: Path, what: str = "--baseline") -> DetectBenchReport:
    data = read_json(path, "detector bench report")
    if data.get("schema") != DETECT_BENCH_SCHEMA:
        raise EdgetlError(f"{what} {path}: not a detector bench report ({DETECT_BENCH_SCHEMA})")
    return read_fields(DetectBenchReport, data, Source(str(path), strict=False))


def gate(report: DetectBenchReport, baseline: DetectBenchReport, opts: BenchOptions,
         latency: bool = True) -> list[str]:  # fmt: skip
    """mAP50-95 more than --max-accuracy-drop points below the baseline's, or p50 more than
    --max-regression percent above it, fails the artifact. `latency` False: mAP alone (an
    emulated device's latency gates nothing)."""
    stored = {entry.name: entry for entry in baseline.results}
    failures = []
    for entry in report.results:
        base = stored.get(entry.name)
        if base is None:
            entry.checks["baseline"] = f"no entry named {entry.name} in {opts.baseline}"
            continue
        failures += entry_regressions(entry, base, opts.max_regression, opts.max_accuracy_drop,
                                      latency)  # fmt: skip
        lost, verdict = compare_robustness(entry.name, entry.robustness, base.robustness,
                                           opts.max_robustness_drop)  # fmt: skip
        if verdict is not None:
            entry.checks["robustness"] = "failed" if verdict.failed else "passed"
        if lost:
            entry.failed.append("robustness")
        failures += lost
    return failures


def entry_regressions(entry: DetectBenchEntry, base: DetectBenchEntry, max_regression: float,
                      max_accuracy_drop: float, latency: bool = True) -> list[str]:  # fmt: skip
    """One artifact against its baseline entry (the checks noted on `entry`)."""
    drop = (base.map50_95 - entry.map50_95) * 100
    slower = (entry.latency.p50 / base.latency.p50 - 1) * 100
    entry.checks["map"] = (f"mAP50-95 {abs(drop):.2f} pts {'below' if drop > 0 else 'above'} "
                           f"the baseline (limit {max_accuracy_drop:g} below)")  # fmt: skip
    if entry.answers and len(entry.answers) == len(base.answers):
        share, differing = same_answers(as_objects(entry.answers), as_objects(base.answers))
        entry.checks["answers"] = (f"{share:.1%} of images answered as the baseline "
                                   f"({differing} not; score >= {ANSWER_SCORE:g})")  # fmt: skip
    entry.checks["latency"] = (f"p50 {slower:+.1f}% vs baseline (limit {max_regression:g}%)"
                               if latency else reports.UNGATED)  # fmt: skip
    failures = []
    if drop > max_accuracy_drop:
        failures.append(f"{entry.name}: mAP50-95 {drop:.2f} points below the baseline")
        entry.failed.append("map")
    if latency and slower > max_regression:
        failures.append(f"{entry.name}: p50 {slower:.1f}% slower than the baseline")
        entry.failed.append("latency")
    return failures


def report_json(report: DetectBenchReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
