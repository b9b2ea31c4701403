"""Offline ImageFolder datasets nobody tuned for, built from scikit-image's sample images.

- photos:   6 classes, one colour photograph each; crops at 30-70% scale (easy).
- scenes:   19 classes of photographs, textures and microscopy, half of them grayscale;
            small crops (15-45%), random rotation, grayscale and JPEG quality (harder).
- patches:  45 classes: the 3x3 grid cells of five grayscale textures and scenes; a class
            is where in the picture a crop comes from (fine-grained, hardest).

    python tools/datasets.py scenes OUT_DIR [--per-class 40] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
SCENES = (
    *PHOTOS,
    "brick",
    "camera",
    "clock",
    "coins",
    "grass",
    "gravel",
    "horse",
    "moon",
    "page",
    "text",
    "cell",
    "retina",
    "colorwheel",
)
PATCH_SOURCES = ("brick", "grass", "gravel", "moon", "camera")


def _picture(name: str) -> Image.Image:
    from skimage import data

    pixels = np.asarray(getattr(data, name)())
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.float64)
        pixels = (255 * (pixels - pixels.min()) / max(np.ptp(pixels), 1e-9)).astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB")


def _save(crop: Image.Image, path: Path, rng: np.random.Generator, size: int, q: tuple) -> None:
    crop.resize((size, size), Image.Resampling.BILINEAR).save(path, quality=int(rng.integers(*q)))


def _random_square(
    picture: Image.Image, rng: np.random.Generator, smallest: float, largest: float
) -> Image.Image:
    side = int(min(picture.size) * rng.uniform(smallest, largest))
    left = int(rng.integers(0, picture.width - side))
    top = int(rng.integers(0, picture.height - side))
    return picture.crop((left, top, left + side, top + side))


def photos(root: Path, per_class: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = _picture(name)
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            crop = _random_square(photo, rng, 0.3, 0.7)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            _save(crop, root / name / f"{index}.jpg", rng, 120, (60, 95))
    return root


def scenes(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in SCENES:
        picture = _picture(name)
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            crop = _random_square(picture, rng, 0.15, 0.45).rotate(90 * int(rng.integers(0, 4)))
            if rng.random() < 0.3:
                crop = crop.convert("L").convert("RGB")
            _save(crop, root / name / f"{index}.jpg", rng, int(rng.integers(64, 160)), (30, 90))
    return root


def patches(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in PATCH_SOURCES:
        picture = _picture(name)
        cell_w, cell_h = picture.width // 3, picture.height // 3
        for row in range(3):
            for col in range(3):
                folder = root / f"{name}_{row}{col}"
                folder.mkdir(parents=True)
                for index in range(per_class):
                    side = int(min(cell_w, cell_h) * rng.uniform(0.5, 0.9))
                    left = col * cell_w + int(rng.integers(0, cell_w - side))
                    top = row * cell_h + int(rng.integers(0, cell_h - side))
                    crop = picture.crop((left, top, left + side, top + side))
                    _save(crop, folder / f"{index}.jpg", rng, 96, (50, 95))
    return root


BUILDERS: dict[str, Callable[..., Path]] = {
    "photos": photos,
    "scenes": scenes,
    "patches": patches,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kwargs = {"seed": args.seed}
    if args.per_class:
        kwargs["per_class"] = args.per_class
    print(BUILDERS[args.name](args.out, **kwargs))


if __name__ == "__main__":
    main()
