"""Which images `edgetl bench` measures: the artifact's reference set, the run's own data by
role, or every image of another folder, matched to the model's classes by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.core.artifact.reference import ReferenceSet
from edgetl.core.data.dataset import (
    BUILTIN_DATASETS,
    data_fingerprint,
    folder_for_classes,
    load_dataset,
)
from edgetl.core.errors import EdgetlError
from edgetl.core.records import Manifest

DEFAULT_SPLIT = "test"


@dataclass
class EvalSet:
    label: str  # what the report says was measured
    images: np.ndarray  # preprocessed float32
    labels: np.ndarray
    fp32_logits: np.ndarray | None = None  # reference for agreement, when known
    absent_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The reference set's pixels before normalization (bench --robustness corrupts them);
    # None for --data, whose images are read already normalized.
    pixels: np.ndarray | None = None


def eval_set(
    artifact: Path,
    manifest: Manifest,
    data: str | None,
    split: str | None,
    limit: int | None,
    allow_overlap: bool = False,
) -> EvalSet:
    if limit is not None and limit < 1:
        raise EdgetlError(f"--limit {limit}: must be at least 1 (or leave it out for all)")
    if data is None:
        if split is not None:
            raise EdgetlError("--split: only with --data (the run's own data)")
        chosen = _reference(artifact, manifest)
    elif _is_run_data(data, manifest):
        chosen = _run_split(data, manifest, split or DEFAULT_SPLIT)
    else:
        if split is not None:
            raise EdgetlError(
                f"--split {split}: --data {data} is not the data this model was trained on, "
                "so it has no splits; every image in it is measured"
            )
        chosen = _folder(Path(data), artifact, manifest, allow_overlap)
    if limit is not None and limit < len(chosen.labels):
        from edgetl.core.data.splitting import stratified_sample

        picked = stratified_sample(chosen.labels, limit, manifest.run.data.seed)
        chosen.images, chosen.labels = chosen.images[picked], chosen.labels[picked]
        if chosen.fp32_logits is not None:
            chosen.fp32_logits = chosen.fp32_logits[picked]
        chosen.label += f", {limit} sampled"
    return chosen


def _reference(artifact: Path, manifest: Manifest) -> EvalSet:
    ref = ReferenceSet.load(artifact / manifest.reference.file)
    return EvalSet(
        f"reference set ({len(ref)} test images in the artifact)",
        manifest.preprocess.normalize(ref.images),
        ref.labels,
        ref.fp32_logits,
        pixels=ref.images,
    )


def _same_path(data: str, source: str) -> bool:
    if data in BUILTIN_DATASETS or source in BUILTIN_DATASETS:
        return data == source
    return Path(data).resolve() == Path(source).resolve()


def _is_run_data(data: str, manifest: Manifest) -> bool:
    """Same path as the run's data, or other path with the same contents (fingerprint)."""
    run = manifest.run.data
    same = _same_path(data, run.source)
    if not same and data in BUILTIN_DATASETS:
        raise EdgetlError(
            f"--data {data}: this model was trained on {run.source}, not on the built-in "
            f"{data}; give a folder of <class>/<images> with the model's classes, or no --data "
            "for the artifact's reference set"
        )
    fingerprint = data_fingerprint(data)
    if same and fingerprint != run.fingerprint:
        raise EdgetlError(
            f"--data {data}: changed since the run was trained (fingerprint differs), so its "
            "train/val/test split cannot be rebuilt; restore it, or put images the model never "
            "saw into a separate folder and bench that (every image is measured; any of the "
            "run's train/val images found there are excluded)"
        )
    return fingerprint == run.fingerprint


def _run_split(data: str, manifest: Manifest, split: str) -> EvalSet:
    run = manifest.run.data
    splits = load_dataset(data, run.val_fraction, run.test_fraction, run.seed)
    images = splits.part(split)
    if images.key_hash() != run.key_sha256.get(split):
        raise EdgetlError(
            f"--data {data} --split {split}: the images of this split differ from the run's "
            "(recorded key hash); the data or edgetl's split changed. Re-run finetune"
        )
    note = " (used to choose: early stopping, INT8 guard)" if split == "val" else ""
    note = " (fitted on)" if split == "train" else note
    return EvalSet(f"{data} {split} split{note}", images.arrays(manifest.preprocess), images.labels)


def _folder(root: Path, artifact: Path, manifest: Manifest, allow_overlap: bool) -> EvalSet:
    """Every image of the folder, except the run's own train/val images (by content hash):
    a copy of the training folder with one image added measured 304 seen images of 385."""
    images, absent = folder_for_classes(root, manifest.classes)
    reference = ReferenceSet.load(artifact / manifest.reference.file)
    seen = reference.seen_before(images.digests or [])
    label, notes = f"{root} (every image)", []
    if reference.seen is None:
        notes.append("this artifact records no train/val hashes: overlap with them not checked")
    elif seen.any() and allow_overlap:
        label = f"{root} (every image, {int(seen.sum())} of them train/val: --allow-overlap)"
        notes.append(
            f"{int(seen.sum())} of {len(seen)} images are the run's train/val images "
            "(fitted or chosen on): this accuracy is not held-out"
        )
    elif seen.any():
        if seen.all():
            raise EdgetlError(
                f"--data {root}: all {len(seen)} images are the run's own train/val images "
                "(same content); nothing held out is left to measure. Give new images, or "
                "--allow-overlap to measure them anyway"
            )
        images = images.subset(np.flatnonzero(~seen))
        label = f"{root} ({len(images)} images; {int(seen.sum())} train/val images excluded)"
        notes.append(
            f"excluded {int(seen.sum())} of {len(seen)} images of {root}: they are the run's "
            "train/val images (fitted or chosen on); --allow-overlap measures them too"
        )
    return EvalSet(
        label,
        images.arrays(manifest.preprocess),
        images.labels,
        absent_classes=absent,
        notes=notes,
    )
