"""Datasets (ImageFolder directories, built-in digits) and their stratified splits.

Data has three roles: train fits, val chooses (early stopping, every guard decision), test is
only reported. Images decode through core/images.py and are preprocessed by
core/preprocess.py, the same code on the host and on the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.core.errors import EdgetlError
from edgetl.core.images import (
    IMAGE_SUFFIXES,
    check_image,
    check_utf8_name,
    list_images,
    read_image,
)
from edgetl.core.preprocess import Preprocess

BUILTIN_DATASETS = ("digits",)
ROLES = ("train", "val", "test")


class ImageSet:
    """A list of labelled images, addressable by index, loaded lazily."""

    def __init__(
        self,
        keys: list[str],
        labels: np.ndarray,
        loader: Loader,
        digests: list[bytes] | None = None,
    ):
        self.keys = keys
        self.labels = np.asarray(labels, dtype=np.int64)
        self._loader = loader
        # sha256 of each image's content (file bytes; digits: pixels), when known: tells the
        # same picture under another name or folder.
        self.digests = digests

    def __len__(self) -> int:
        return len(self.keys)

    def image(self, index: int) -> Image.Image:
        return self._loader(self.keys[index])

    def subset(self, indices: np.ndarray | list[int] | range) -> ImageSet:
        indices = [int(i) for i in indices]
        digests = None if self.digests is None else [self.digests[i] for i in indices]
        return ImageSet(
            [self.keys[i] for i in indices], self.labels[indices], self._loader, digests
        )

    def first_of_each(self, digests: set[bytes]) -> ImageSet:
        """The first image of each content in `digests` (an image set with known digests)."""
        assert self.digests is not None
        seen: set[bytes] = set()
        picked = []
        for index, digest in enumerate(self.digests):
            if digest in digests and digest not in seen:
                seen.add(digest)
                picked.append(index)
        return self.subset(picked)

    @classmethod
    def joined(cls, parts: list[ImageSet]) -> ImageSet:
        """One set of several read by the same loader (the roles of one dataset)."""
        loader = parts[0]._loader
        assert all(part._loader is loader for part in parts)
        digests = [d for part in parts for d in part.digests or []]
        known = all(part.digests is not None for part in parts)
        return cls(
            [key for part in parts for key in part.keys],
            np.concatenate([part.labels for part in parts]),
            loader,
            digests if known else None,
        )

    def sample(self, limit: int | None, seed: int) -> ImageSet:
        """At most `limit` images, every class in proportion (seeded); all when limit is None."""
        if limit is None or limit >= len(self):
            return self
        return self.subset(stratified_sample(self.labels, limit, seed))

    def batches(
        self, preprocess: Preprocess, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            images = np.stack([preprocess(self.image(i)) for i in range(start, stop)])
            yield images, self.labels[start:stop]

    def arrays(self, preprocess: Preprocess) -> np.ndarray:
        """Every image preprocessed, (N, 3, S, S) float32."""
        if not len(self):
            size = preprocess.size
            return np.zeros((0, 3, size, size), np.float32)
        return np.concatenate([batch for batch, _ in self.batches(preprocess, 64)])

    def crops(self, preprocess: Preprocess) -> np.ndarray:
        """Every image resized and cropped, (N, 3, S, S) uint8 (not normalized)."""
        return np.stack([preprocess.crop(self.image(i)) for i in range(len(self))])

    def key_hash(self) -> str:
        """Which images, in which order: recorded in the run so a split can be checked later."""
        return hashlib.sha256("\n".join(self.keys).encode()).hexdigest()


class Loader:
    def __call__(self, key: str) -> Image.Image:  # pragma: no cover - interface
        raise NotImplementedError


class FileLoader(Loader):
    def __init__(self, root: Path):
        self.root = root

    def __call__(self, key: str) -> Image.Image:
        return read_image(self.root / key)


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


def load_dataset(
    spec: str, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> Splits:
    """`spec` is a built-in name (digits), an ImageFolder directory or a pattern of tar shards
    (`shards/train-{0000..0099}.tar`); see docs/finetune.md for layouts."""
    check_fractions(val_fraction, test_fraction)
    if spec in BUILTIN_DATASETS:
        from edgetl.core.digits import load_digits

        return load_digits(val_fraction, test_fraction, seed)
    from edgetl.core.shards import is_shard_spec  # shards.py builds on this module

    if is_shard_spec(spec):
        return _load_shards(spec, val_fraction, test_fraction, seed)
    return _load_image_folder(Path(spec), val_fraction, test_fraction, seed)


def _load_shards(spec: str, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Tar shards, read in place, split three ways per class like a flat folder."""
    from edgetl.core.shards import scan_shards

    spec = str(Path(spec).resolve())  # later stages may run from another directory
    hasher = hashlib.sha256()
    classes, keys, labels, digests, loader = scan_shards(spec, hasher)
    everything = ImageSet(keys, np.asarray(labels), loader, digests)
    _need_per_class(Path(spec), classes, everything.labels, 3, "train, val and test")
    train, val, test = stratified_split(everything.labels, (val_fraction, test_fraction), seed)
    return Splits(
        source=spec,
        classes=classes,
        train=everything.subset(train),
        val=everything.subset(val),
        test=everything.subset(test),
        fingerprint=hasher.hexdigest(),
        strategy=split_words(val_fraction, test_fraction, seed),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def data_fingerprint(spec: str) -> str:
    """The fingerprint `load_dataset` would record for `spec`, without splitting it."""
    if spec in BUILTIN_DATASETS:
        from edgetl.core.digits import digits

        return digits()[2]
    from edgetl.core.shards import is_shard_spec, scan_shards

    if is_shard_spec(spec):
        hasher = hashlib.sha256()
        scan_shards(str(Path(spec).resolve()), hasher)
        return hasher.hexdigest()
    root = _check_root(Path(spec))
    hasher = hashlib.sha256()
    subs: list[str | None] = list(_layout(root)) or [None]
    for sub in subs:
        # Any folder has a fingerprint, and it needs the bytes only: whoever then reads the
        # images decodes (and checks) them once.
        _scan_classes(root, sub, hasher, min_classes=1, check=False)
    return hasher.hexdigest()


def folder_for_classes(root: Path, classes: list[str]) -> tuple[ImageSet, list[str]]:
    """Every image of a class-folder directory, labelled by the model's class names.

    Returns the set and the model's classes that have no folder here. A folder that names no
    class of the model is an error naming it.
    """
    root = _check_root(root)
    found, keys, labels, digests = _scan_classes(root, None, hashlib.sha256(), min_classes=1)
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise EdgetlError(
            f"--data {root}: folders {unknown} name no class of this model "
            f"({', '.join(classes)}); give a directory of <class>/<images> with the model's "
            "class names (for a train/val/test layout, point --data at its test/ folder)"
        )
    mapped = [classes.index(found[label]) for label in labels]
    absent = [name for name in classes if name not in found]
    return ImageSet(keys, np.asarray(mapped), FileLoader(root), digests), absent


def split_words(val_fraction: float, test_fraction: float, seed: int) -> str:
    return f"stratified split: val {val_fraction:.0%}, test {test_fraction:.0%}, seed {seed}"


def _check_root(root: Path) -> Path:
    if not root.exists():
        raise EdgetlError(
            f"--data {root}: no such directory; give an ImageFolder directory "
            f"(DIR/<class>/*.jpg) or a built-in dataset ({', '.join(BUILTIN_DATASETS)})"
        )
    if not root.is_dir():
        raise EdgetlError(f"--data {root}: is a file; give a directory of class folders")
    return root


def _layout(root: Path) -> list[str]:
    """The role folders present (train/ with val/ and/or test/), or [] for a flat directory."""
    if not (root / "train").is_dir():
        return []
    present = [role for role in ROLES if (root / role).is_dir()]
    return present if len(present) > 1 else []


def _load_image_folder(root: Path, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    # Absolute: later stages may run from another working directory.
    root = _check_root(root).resolve()
    hasher = hashlib.sha256()
    loader = FileLoader(root)
    layout = _layout(root)
    if not layout:
        classes, keys, labels, digests = _scan_classes(root, None, hasher)
        everything = ImageSet(keys, np.asarray(labels), loader, digests)
        _need_per_class(root, classes, everything.labels, 3, "train, val and test")
        train, val, test = stratified_split(everything.labels, (val_fraction, test_fraction), seed)
        parts = {"train": everything.subset(train), "val": everything.subset(val)}
        parts["test"] = everything.subset(test)
        strategy = split_words(val_fraction, test_fraction, seed)
    else:
        scanned = {role: _scan_classes(root, role, hasher) for role in layout}
        classes = scanned["train"][0]
        for role in layout:
            _same_classes(root, classes, role, scanned[role][0])
        parts = {
            role: ImageSet(keys, np.asarray(labels), loader, digests)
            for role, (_, keys, labels, digests) in scanned.items()
        }
        if "val" in parts and "test" not in parts:
            # The user's val/ is never chosen on: it becomes the reported set, and the
            # selection split is carved out of train/.
            parts["test"] = parts.pop("val")
        if "val" in parts:
            strategy = "train/, val/ and test/ directories"
        else:
            whole = parts["train"]
            _need_per_class(root / "train", classes, whole.labels, 2, "train and val")
            train, val = stratified_split(whole.labels, (val_fraction,), seed)
            parts["train"], parts["val"] = whole.subset(train), whole.subset(val)
            given = "test/" if "test" in layout else "val/ (used as the test set: reported only)"
            strategy = (
                f"{given} directory; val carved from train/ ({val_fraction:.0%}, seed {seed})"
            )
    return Splits(
        source=str(root),
        classes=classes,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        fingerprint=hasher.hexdigest(),
        strategy=strategy,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def _same_classes(root: Path, classes: list[str], role: str, found: list[str]) -> None:
    if found != classes:
        only_train = sorted(set(classes) - set(found))
        only_other = sorted(set(found) - set(classes))
        raise EdgetlError(
            f"{root}: train/ and {role}/ have different classes (only in train: {only_train}, "
            f"only in {role}: {only_other}); give both the same class folders"
        )


def _need_per_class(
    root: Path, classes: list[str], labels: np.ndarray, least: int, parts: str
) -> None:
    counts = np.bincount(labels, minlength=len(classes))
    small = [name for name, n in zip(classes, counts, strict=True) if n < least]
    if small:
        raise EdgetlError(
            f"{root}: classes {small} have fewer than {least} images; cannot split {parts}. "
            "Add images, or give a separate test/ folder"
        )


def _scan_classes(
    root: Path, sub: str | None, hasher: Any, min_classes: int = 2, check: bool = True
) -> tuple[list[str], list[str], list[int], list[bytes]]:
    """Find class folders and their images; check each is an image from its header, without
    decoding it (unless `check` is off: a fingerprint needs only the bytes); hash names and
    contents. The one full decode is the feature extraction's (train/extract.py)."""
    base = root / sub if sub else root
    classes = sorted(
        check_utf8_name(p).name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise EdgetlError(
            f"{base}: no class folders found; expected {base}/<class_name>/<image files>"
        )
    if len(classes) < min_classes:
        raise EdgetlError(
            f"{base}: only one class folder ({classes[0]}); a classifier needs at least two "
            "classes, each in its own folder"
        )
    keys: list[str] = []
    labels: list[int] = []
    digests: list[bytes] = []
    for label, name in enumerate(classes):
        files = list_images(base / name)
        if not files:
            raise EdgetlError(
                f"{base / name}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "add images or remove the folder"
            )
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise EdgetlError(f"{path}: cannot read this file ({exc.strerror})") from exc
            if check:
                check_image(path, data)
            key = path.relative_to(root).as_posix()
            keys.append(key)
            labels.append(label)
            digests.append(fingerprint_sample(hasher, key, label, data))
    return classes, keys, labels, digests
