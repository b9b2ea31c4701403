"""The three roles of a dataset: train fits, val chooses (early stopping, every guard
decision), test is only reported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetl.core.data.imageset import ImageSet
from edgetl.core.errors import EdgetlError

ROLES = ("train", "val", "test")


@dataclass
class Splits:
    """Train, val and test sets over one list of classes, and a fingerprint of their contents."""

    source: str
    classes: list[str]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    fingerprint: str
    strategy: str  # how the three sets were obtained, in words
    val_fraction: float
    test_fraction: float
    seed: int

    def part(self, role: str) -> ImageSet:
        if role not in ROLES:
            raise EdgetlError(f"--split {role}: choose one of {', '.join(ROLES)}")
        return {"train": self.train, "val": self.val, "test": self.test}[role]

    def sizes(self) -> str:
        return f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test"

    def remember_crops(self, limit_bytes: int) -> None:
        """Keep every crop made from now on, up to `limit_bytes` (core/data/imageset.CropMemo):
        for a caller that measures the same images in several stages (the search)."""
        for part in (self.train, self.val, self.test):
            part.remember_crops(limit_bytes)

    def matches(self, source: str, val_fraction: float, test_fraction: float, seed: int) -> bool:
        """Whether these are the splits `load_dataset` would make of `source` with these terms."""
        terms = (self.val_fraction, self.test_fraction, self.seed)
        same_source = source == self.source or str(Path(source).resolve()) == self.source
        return same_source and terms == (val_fraction, test_fraction, seed)
