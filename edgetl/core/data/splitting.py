"""Stratified splits and samples (seeded, every class in proportion) and the data's
fingerprint: the same for image folders, tar shards and digits."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from edgetl.core.errors import EdgetlError


def fingerprint_sample(hasher: Any, key: str, label: int, data: bytes) -> bytes:
    """One sample's content sha256, folded with its key and label into the data's
    fingerprint: the same for image folders and tar shards."""
    digest = hashlib.sha256(data).digest()
    hasher.update(f"{key}\0{label}\0".encode())
    hasher.update(digest)
    return digest


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for option, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 < value < 1:
            raise EdgetlError(f"{option} {value}: give a share between 0 and 1 (e.g. 0.2)")
    if val_fraction + test_fraction >= 1:
        raise EdgetlError(
            f"--val-fraction {val_fraction} + --test-fraction {test_fraction} leave no "
            "training images; their sum must be below 1"
        )


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """[rest, part for each fraction]: per class a seeded shuffle, round(n * f) (at least 1) each.

    Every class must have at least one image more than there are fractions.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        start = 0
        for index, fraction in enumerate(fractions, start=1):
            count = max(1, round(len(members) * fraction))
            count = min(count, len(members) - start - (len(fractions) - index) - 1)
            parts[index].extend(members[start : start + count])
            start += count
        parts[0].extend(members[start:])
    return [np.sort(np.asarray(part, dtype=np.int64)) for part in parts]


def stratified_sample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` indices with every class in proportion to its size; seeded.

    Each class's members are shuffled and spread evenly over [0, 1); taking the `count`
    smallest positions gives every class its share, whatever the class sizes.
    """
    rng = np.random.default_rng(seed)
    positions = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        positions[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.sort(np.argsort(positions, kind="stable")[:count])


def split_words(val_fraction: float, test_fraction: float, seed: int) -> str:
    return f"stratified split: val {val_fraction:.0%}, test {test_fraction:.0%}, seed {seed}"
