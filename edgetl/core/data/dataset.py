"""Datasets (ImageFolder directories, built-in digits) and their stratified splits.

Data has three roles: train fits, val chooses (early stopping, every guard decision), test is
only reported. Images decode through core/images.py and are preprocessed by
core/preprocess.py, the same code on the host and on the device.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.data.imageset import FileLoader, ImageSet
from edgetl.core.data.splits import ROLES, Splits
from edgetl.core.data.splitting import (
    check_fractions,
    fingerprint_sample,
    split_words,
    stratified_split,
)
from edgetl.core.errors import EdgetlError
from edgetl.core.images import IMAGE_SUFFIXES, check_image, check_utf8_name, list_images

BUILTIN_DATASETS = ("digits",)


def load_dataset(
    spec: str, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> Splits:
    """`spec` is a built-in name (digits), an ImageFolder directory or a pattern of tar shards
    (`shards/train-{0000..0099}.tar`); see docs/finetune.md for layouts."""
    check_fractions(val_fraction, test_fraction)
    if spec in BUILTIN_DATASETS:
        from edgetl.core.data.digits import load_digits

        return load_digits(val_fraction, test_fraction, seed)
    from edgetl.core.data.shards import is_shard_spec  # shards.py builds on this module

    if is_shard_spec(spec):
        return _load_shards(spec, val_fraction, test_fraction, seed)
    return _load_image_folder(Path(spec), val_fraction, test_fraction, seed)


def _load_shards(spec: str, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Tar shards, read in place, split three ways per class like a flat folder."""
    from edgetl.core.data.shards import scan_shards

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
        from edgetl.core.data.digits import digits

        return digits()[2]
    from edgetl.core.data.shards import is_shard_spec, scan_shards

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
