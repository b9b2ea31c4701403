"""Datasets (ImageFolder directories, built-in digits), the preprocessing spec, stratified splits.

Preprocessing is implemented here once, with PIL and NumPy only, so that training,
calibration, parity checks and the on-device benchmark feed the model identical tensors.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgetl.errors import EdgetlError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BUILTIN_DATASETS = ("digits",)
DIGITS_RENDERING = "8x8 in a 10x10 field, ink 0..16 -> 0..255, gray -> RGB"
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocess:
    """Resize the short side to `size / crop_pct`, center-crop `size`, scale to [0,1], normalize."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @property
    def resize_size(self) -> int:
        return int(self.size / self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        return cls(
            size=int(data["size"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            interpolation=str(data["interpolation"]),
            crop_pct=float(data["crop_pct"]),
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        """PIL image -> float32 CHW array."""
        image = image.convert("RGB")
        # Same arithmetic as torchvision's Resize(int) + CenterCrop, which timm uses.
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        image = image.resize((new_w, new_h), INTERPOLATIONS.get(self.interpolation, Image.BICUBIC))
        left = int(round((new_w - self.size) / 2.0))
        top = int(round((new_h - self.size) / 2.0))
        image = image.crop((left, top, left + self.size, top + self.size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))


class ImageSet:
    """A list of labelled images, addressable by index, loaded lazily."""

    def __init__(self, keys: list[str], labels: np.ndarray, loader: _Loader):
        self.keys = keys
        self.labels = np.asarray(labels, dtype=np.int64)
        self._loader = loader

    def __len__(self) -> int:
        return len(self.keys)

    def image(self, index: int) -> Image.Image:
        return self._loader(self.keys[index])

    def subset(self, indices: np.ndarray | list[int]) -> ImageSet:
        indices = list(indices)
        return ImageSet([self.keys[i] for i in indices], self.labels[indices], self._loader)

    def batches(
        self, preprocess: Preprocess, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            images = np.stack([preprocess(self.image(i)) for i in range(start, stop)])
            yield images, self.labels[start:stop]


class _Loader:
    def __call__(self, key: str) -> Image.Image:  # pragma: no cover - interface
        raise NotImplementedError


class FileLoader(_Loader):
    def __init__(self, root: Path):
        self.root = root

    def __call__(self, key: str) -> Image.Image:
        path = self.root / key
        try:
            with Image.open(path) as image:
                return _to_rgb(image)
        except (OSError, UnidentifiedImageError) as exc:
            raise EdgetlError(f"{path}: cannot read this image ({exc}); fix or remove it") from exc


class _DigitsLoader(_Loader):
    def __init__(self, images: np.ndarray):
        self.images = images

    def __call__(self, key: str) -> Image.Image:
        pixels = self.images[int(key.split(":")[1])]
        # A 1-pixel margin around the 8x8 field, as MNIST pads its digits: the ink that
        # touches the border survives the center crop.
        canvas = np.zeros((10, 10), np.uint8)
        canvas[1:9, 1:9] = (pixels * (255.0 / 16.0)).astype(np.uint8)
        return Image.fromarray(canvas, mode="L").convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette and RGBA become RGB (alpha laid over white)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


@dataclass
class Splits:
    """Train and validation sets over one list of classes, and a fingerprint of their contents."""

    source: str
    classes: list[str]
    train: ImageSet
    val: ImageSet
    fingerprint: str
    val_strategy: str
    val_fraction: float
    seed: int

    def describe(self) -> dict[str, Any]:
        """What a later stage needs to rebuild the same split."""
        return {
            "source": self.source,
            "classes": self.classes,
            "train": len(self.train),
            "val": len(self.val),
            "val_strategy": self.val_strategy,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
        }


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded shuffle; round(n * val_fraction) (at least 1 when n >= 2) go to val."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n_val = max(1, round(len(members) * val_fraction)) if len(members) >= 2 else 0
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


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


def load_dataset(spec: str, val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """`spec` is a built-in name (digits) or an ImageFolder directory."""
    if spec in BUILTIN_DATASETS:
        return _load_digits(val_fraction, seed)
    return _load_image_folder(Path(spec), val_fraction, seed)


def validation_arrays(
    source: str,
    val_fraction: float,
    seed: int,
    classes: list[str],
    preprocess: Preprocess,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The validation split of `source` as the run saw it, preprocessed.

    With `limit`, a stratified seeded sample of that many images (all classes represented).
    """
    return split_val_arrays(load_dataset(source, val_fraction, seed), classes, preprocess, limit)


def split_val_arrays(
    splits: Splits, classes: list[str], preprocess: Preprocess, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`validation_arrays` for splits already loaded."""
    if splits.classes != classes:
        raise EdgetlError(
            f"--data {splits.source}: classes {splits.classes} do not match the model's {classes}"
        )
    val = splits.val
    if limit is not None and limit < len(val):
        val = val.subset(stratified_sample(val.labels, limit, splits.seed))
    images = np.concatenate([batch for batch, _ in val.batches(preprocess, 64)])
    return images, val.labels


def _load_digits(val_fraction: float, seed: int) -> Splits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32)
    labels = np.asarray(digits.target, dtype=np.int64)
    everything = ImageSet(
        [f"digits:{i}" for i in range(len(labels))], labels, _DigitsLoader(images)
    )
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    # The rendering is part of the data: change DIGITS_RENDERING when _DigitsLoader changes.
    fingerprint = hashlib.sha256(
        DIGITS_RENDERING.encode() + images.tobytes() + labels.tobytes()
    ).hexdigest()
    return Splits(
        source="digits",
        classes=[str(d) for d in range(10)],
        train=everything.subset(train_idx),
        val=everything.subset(val_idx),
        fingerprint=fingerprint,
        val_strategy=f"stratified {val_fraction:.0%} seed {seed}",
        val_fraction=val_fraction,
        seed=seed,
    )


def _load_image_folder(root: Path, val_fraction: float, seed: int) -> Splits:
    if not root.exists():
        raise EdgetlError(
            f"--data {root}: no such directory; give an ImageFolder directory "
            f"(DIR/<class>/*.jpg) or a built-in dataset ({', '.join(BUILTIN_DATASETS)})"
        )
    if not root.is_dir():
        raise EdgetlError(f"--data {root}: is a file; give a directory of class folders")
    hasher = hashlib.sha256()
    loader = FileLoader(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train_classes, train_keys, train_labels = _scan_classes(root, "train", hasher)
        val_classes, val_keys, val_labels = _scan_classes(root, "val", hasher)
        if train_classes != val_classes:
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            raise EdgetlError(
                f"{root}: train/ and val/ have different classes (only in train: {only_train}, "
                f"only in val: {only_val}); give both the same class folders"
            )
        return Splits(
            source=str(root),
            classes=train_classes,
            train=ImageSet(train_keys, np.asarray(train_labels), loader),
            val=ImageSet(val_keys, np.asarray(val_labels), loader),
            fingerprint=hasher.hexdigest(),
            val_strategy="val/ directory",
            val_fraction=val_fraction,
            seed=seed,
        )
    classes, keys, labels = _scan_classes(root, None, hasher)
    labels_array = np.asarray(labels, dtype=np.int64)
    if min(np.bincount(labels_array)) < 2:
        small = [c for c, n in zip(classes, np.bincount(labels_array), strict=True) if n < 2]
        raise EdgetlError(f"{root}: classes {small} have fewer than 2 images; cannot split off val")
    everything = ImageSet(keys, labels_array, loader)
    train_idx, val_idx = stratified_split(labels_array, val_fraction, seed)
    return Splits(
        source=str(root),
        classes=classes,
        train=everything.subset(train_idx),
        val=everything.subset(val_idx),
        fingerprint=hasher.hexdigest(),
        val_strategy=f"stratified {val_fraction:.0%} seed {seed}",
        val_fraction=val_fraction,
        seed=seed,
    )


def _scan_classes(
    root: Path, sub: str | None, hasher: Any
) -> tuple[list[str], list[str], list[int]]:
    """Find class folders and their images; check every image decodes; hash names and contents."""
    base = root / sub if sub else root
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise EdgetlError(
            f"{base}: no class folders found; expected {base}/<class_name>/<image files>"
        )
    keys: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            p
            for p in (base / name).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
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
            _check_image(path, data)
            key = path.relative_to(root).as_posix()
            hasher.update(f"{key}\0{label}\0".encode())
            hasher.update(hashlib.sha256(data).digest())
            keys.append(key)
            labels.append(label)
    return classes, keys, labels


def _check_image(path: Path, data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:  # PIL raises many types for corrupt files
        raise EdgetlError(f"{path}: not a readable image ({exc}); fix or remove this file") from exc
