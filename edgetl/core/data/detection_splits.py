"""A detection dataset's three roles, as the classifier's (core/data/splits.py): the splits the
layout has, and those it lacks carved from train (stratified by each image's most frequent
class, seeded); test is only ever reported."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from edgetl.core.data.detection import DetectionSet, layout, read_detection
from edgetl.core.data.imageset import FileLoader, ImageSet
from edgetl.core.data.splits import ROLES
from edgetl.core.data.splitting import check_fractions, split_words, stratified_split
from edgetl.core.errors import EdgetlError


@dataclass
class DetectionSplits:
    source: str
    layout: str  # "yolo" or "coco"
    classes: list[str]
    train: DetectionSet
    val: DetectionSet
    test: DetectionSet
    fingerprint: str  # sha256 over every split's keys, contents and boxes
    strategy: str

    def part(self, role: str) -> DetectionSet:
        if role not in ROLES:
            raise EdgetlError(f"--split {role}: choose one of {', '.join(ROLES)}")
        return {"train": self.train, "val": self.val, "test": self.test}[role]

    @cached_property
    def loader(self) -> FileLoader:
        return FileLoader(self.train.root)

    def images(self, role: str) -> ImageSet:
        """The role's images for the feature cache (labels are the boxes', kept apart)."""
        part = self.part(role)
        labels = np.zeros(len(part), np.int64)
        return ImageSet(list(part.keys), labels, self.loader, list(part.digests))

    def sizes(self) -> str:
        return f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test"


def load_detection(
    root: Path, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> DetectionSplits:
    """The dataset at `root` in either layout, with val and test carved when absent."""
    found = layout(root)
    read = read_detection(root)
    if "train" not in read:
        raise EdgetlError(f"--data {root}: no train split (images/train or instances_train)")
    classes = read["train"].classes
    for role, part in read.items():
        if part.classes != classes:
            raise EdgetlError(f"--data {root}: the {role} split names other classes than train")
    check_fractions(val_fraction, test_fraction)
    train, carved = read["train"], []
    missing = [r for r in ("val", "test") if r not in read]
    if missing:
        fractions = {"val": val_fraction, "test": test_fraction}
        share = [fractions[r] for r in missing]
        parts = stratified_split(_mergeable(train.strata(), len(missing)), tuple(share), seed)
        train, *pieces = (read["train"].subset(p) for p in parts)
        read.update(dict(zip(missing, pieces, strict=True)))
        carved = [split_words(val_fraction, test_fraction, seed)]
    strategy = "; ".join(carved) or f"the {found} layout's own splits"
    return DetectionSplits(
        str(root), str(found), classes, train, read["val"], read["test"],
        _fingerprint([train, read["val"], read["test"]]), strategy,
    )  # fmt: skip


def _mergeable(strata: np.ndarray, parts: int) -> np.ndarray:
    """Strata too small to give every part an image folded into one (stratified_split needs
    one image more than there are parts in each)."""
    values, counts = np.unique(strata, return_counts=True)
    small = values[counts <= parts]
    merged = strata.copy()
    merged[np.isin(strata, small)] = -1
    if 0 < (merged == -1).sum() <= parts:  # still too few: join the largest stratum
        merged[merged == -1] = values[counts.argmax()]
    if len(merged) <= parts:
        raise EdgetlError(f"{len(merged)} images cannot be split into train, val and test")
    return merged


def _fingerprint(parts: list[DetectionSet]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(b"\0split\0")
        for key, digest, objects in zip(part.keys, part.digests, part.objects, strict=True):
            hasher.update(key.encode() + b"\0" + digest)
            hasher.update(objects.boxes.tobytes() + objects.classes.tobytes())
    return hasher.hexdigest()
