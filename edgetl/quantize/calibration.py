"""Calibration sets: which images the quantizer sees, preprocessed exactly as in training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.data.imageset import FileLoader, ImageSet
from edgetl.core.data.splits import Splits
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.images import IMAGE_SUFFIXES, list_images
from edgetl.train.model import Run

MIN_SAMPLES = 32


@dataclass
class CalibrationSet:
    images: np.ndarray  # (N, 3, S, S) float32, preprocessed
    files: list[str]  # dataset keys or paths relative to the calibration directory
    source: str
    seed: int

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "count": len(self.files),
            "seed": self.seed,
            "files": self.files,
        }


def from_run(run: Run, splits: Splits, count: int, seed: int) -> CalibrationSet:
    """A stratified sample of the run's own training split (`splits`, from `run.splits()`)."""
    picked = splits.train.sample(count, seed)
    return CalibrationSet(
        picked.arrays(run.preprocess), picked.keys, f"{splits.source} (train split)", seed
    )


def from_directory(path: Path, run: Run, count: int, seed: int) -> CalibrationSet:
    """Images under `path` (flat, or in folders named after the run's classes)."""
    if not path.is_dir():
        raise EdgetlError(f"--calib-data {path}: no such directory")
    folders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    strangers = [name for name in folders if name not in run.classes]
    if strangers:
        raise EdgetlError(
            f"--calib-data {path}: folders {strangers} are not classes of this model "
            f"({', '.join(run.classes)}); use images of the model's own classes, "
            "flat or in class folders"
        )
    files = [p.relative_to(path).as_posix() for p in list_images(path)]
    if not files:
        raise EdgetlError(
            f"--calib-data {path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found"
        )
    labels = np.asarray([run.classes.index(f.split("/")[0]) if "/" in f else -1 for f in files])
    picked = ImageSet(files, labels, FileLoader(path))
    picked = picked.sample(count, seed)
    return CalibrationSet(picked.arrays(run.preprocess), picked.keys, str(path), seed)


def from_array(path: Path, run: Run, count: int, seed: int) -> CalibrationSet:
    """Already-preprocessed tensors saved with numpy.save, shape (N, 3, S, S)."""
    size = run.preprocess.size
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EdgetlError(f"--calib-data {path}: not a readable .npy array ({exc})") from exc
    if images.ndim != 4 or images.shape[1:] != (3, size, size):
        raise EdgetlError(
            f"--calib-data {path}: shape {images.shape}, expected (N, 3, {size}, {size}) "
            "preprocessed as the run's edgetl.json says; or give a directory of images"
        )
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.permutation(len(images))[:count])
    return CalibrationSet(
        images[picked].astype(np.float32), [f"{path.name}[{i}]" for i in picked], str(path), seed
    )


def build_calibration(
    run: Run,
    splits: Splits,
    calib_data: Path | None,
    count: int,
    recipe_count: int,
) -> CalibrationSet:
    """The calibration set for one export, seeded by the run: fewer than 32 images is an
    error, fewer than asked a warning."""
    if count < MIN_SAMPLES:
        raise EdgetlError(f"--calib-samples {count}: need at least {MIN_SAMPLES}")
    seed = run.seed
    if calib_data is None:
        calib = from_run(run, splits, count, seed)
    elif calib_data.suffix == ".npy":
        calib = from_array(calib_data, run, count, seed)
    else:
        calib = from_directory(calib_data, run, count, seed)
    found = len(calib.files)
    if found < MIN_SAMPLES:
        raise EdgetlError(
            f"calibration set {calib.source}: only {found} images; INT8 ranges from fewer than "
            f"{MIN_SAMPLES} are unreliable, add images"
        )
    if found < recipe_count:
        say(
            f"[yellow]warning:[/] calibrating on {found} images from {calib.source}; the recipe "
            f"asks for {recipe_count}, ranges may be less reliable"
        )
    return calib
