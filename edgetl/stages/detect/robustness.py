"""`bench --robustness` of detector artifacts: mAP50-95 on the artifact's reference images
under the camera conditions of a corruption suite (stages/bench/robustness.py), and the
share of the clean detections found again under each. The attack is for classifiers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgetl.backends.detector import DetectorModel, detect
from edgetl.core.artifact.detection_reference import DetectionReference
from edgetl.core.errors import EdgetlError
from edgetl.core.measures.detection import agreement, coco_map
from edgetl.core.records.detector import DetectBenchEntry
from edgetl.stages.bench.options import BenchOptions
from edgetl.stages.bench.robustness import Subject, check_inputs, measure


def check(opts: BenchOptions) -> None:
    """Exit 2 before any measuring when --robustness cannot be done for detectors."""
    if opts.attack is not None:
        raise EdgetlError("--attack: the teacher-transfer attack is for classifiers; give "
                          "--robustness alone for a detector's camera conditions")  # fmt: skip
    check_inputs(opts)


def add_robustness(
    models: Sequence[DetectorModel], results: Sequence[DetectBenchEntry], opts: BenchOptions
) -> None:
    """Each entry's robustness, measured on its artifact's reference set."""
    subjects = [_subject(model, entry.name) for model, entry in zip(models, results, strict=True)]
    found = measure(subjects, opts.corruptions, None)
    for entry in results:
        entry.robustness = found[entry.name]


def _subject(model: DetectorModel, name: str) -> Subject:
    if model.manifest.reference is None:
        raise EdgetlError(f"--robustness: {model.path} carries no reference set; export it "
                          "again with this edgetl")  # fmt: skip
    reference = DetectionReference.load(model.path / str(model.manifest.reference))
    sizes, classes = reference.sizes, len(reference.classes)

    def found(images: np.ndarray) -> list:
        batch = model.letterbox.normalize(images)
        return detect(model.runner, batch, sizes, model.manifest)

    clean_objects = found(reference.images)

    def score(images: np.ndarray) -> tuple[float, float]:
        objects = found(images)
        kept = agreement(clean_objects, objects)
        return coco_map(reference.truth, objects, sizes, classes).map50_95, kept or 0.0

    clean = coco_map(reference.truth, clean_objects, sizes, classes).map50_95
    return Subject(name, model.path, reference.images, clean, score, "mAP50-95")
