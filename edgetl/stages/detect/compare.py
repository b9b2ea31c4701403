"""`edgetl compare BASE CANDIDATE` of two detector artifacts: is the candidate slower, or
less accurate? Latency as for classifiers (interleaved rounds of fresh sessions, the ratio of
medians bootstrapped, stages/bench/compare.py), each timed run from the letterboxed image to
detections, NMS included; mAP50-95 of both on the same images (the run's test split,
--data, or BASE's reference set), with the paired bootstrap bound of the drop said."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.detector import DetectorModel, detect, load_detector
from edgetl.core.artifact.signing import trusted_keys
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.detection import coco_map
from edgetl.core.measures.map_evidence import map_drop
from edgetl.core.records.detector import is_detector
from edgetl.stages.bench.compare import Comparison, check_options, compare_runners
from edgetl.stages.bench.options import CompareOptions
from edgetl.stages.detect.measure import detection_data, objects

CONFIDENCE = 0.9  # the bound said beside the verdict (the verdict is on the point drop)


def compare_detectors(opts: CompareOptions) -> Comparison:
    check_options(opts)
    started = time.perf_counter()
    for path, role in ((opts.base, "BASE"), (opts.candidate, "CANDIDATE")):
        if not is_detector(path):
            raise EdgetlError(
                f"{role} {path}: not a detector artifact; compare detectors with detectors (a "
                "stored report as BASE is not built for them)"
            )
    keys = trusted_keys(opts.trust)

    def loader(path: Path) -> Any:
        return lambda: load_detector(path, opts.threads, keys)

    base, candidate = load_detector(opts.base, opts.threads, keys), loader(opts.candidate)()
    _check_pair(opts, base, candidate)
    measured = detection_data(base, opts)
    say(f"compare on {measured.source} ({measured.split}, {len(measured)} images): "
        f"{opts.rounds} rounds x {opts.iterations} runs, NMS included")  # fmt: skip
    size = measured.sizes[0]

    def call(model: DetectorModel, single: np.ndarray) -> Any:
        return lambda: detect(model.runner, single, [size], model.manifest)

    verdict = compare_runners(loader(opts.base), loader(opts.candidate), measured.input(0),
                              opts.rounds, opts.iterations, opts.warmup, opts.max_regression,
                              opts.max_rounds, call)  # fmt: skip
    found = [objects(model, measured) for model in (base, candidate)]
    classes = len(measured.classes)
    maps = [coco_map(measured.truth, f, measured.sizes, classes).map50_95 for f in found]
    drop = map_drop(measured.truth, found[0], found[1], measured.sizes, classes, CONFIDENCE)
    say(f"mAP50-95 drop {drop.drop_pts:+.2f} pts; at {CONFIDENCE:.0%} at most "
        f"{drop.upper_pts:.2f} (paired bootstrap over the {len(measured)} images)")  # fmt: skip
    seconds = time.perf_counter() - started
    return Comparison(verdict, maps[0], maps[1], len(measured), opts.max_accuracy_drop, seconds,
                      "mAP50-95")  # fmt: skip


def _check_pair(opts: CompareOptions, base: DetectorModel, candidate: DetectorModel) -> None:
    if base.classes != candidate.classes:
        raise EdgetlError(
            f"{opts.candidate}: classes differ from {opts.base}'s; compare models of one run"
        )
    if base.proxy != candidate.proxy:
        raise EdgetlError(
            f"cannot compare {opts.base} ({base.proxy or base.manifest.backend}) with "
            f"{opts.candidate} ({candidate.proxy or candidate.manifest.backend}): a host "
            "proxy's latency says nothing of the device's; compare artifacts that run alike"
        )
    if base.proxy is not None:
        say(f"both run on the host proxy {base.proxy}: its latency, not the device's")
