"""The offline detection set (`edgetl quickstart --task detect`): objects cut from photos that
scikit-image ships, pasted at random sizes and places onto backgrounds made from its other
photos, so every box is exact by construction. Written in the YOLO layout, seeded: the same
seed makes the same bytes.

Four classes of different kinds: two photo patches (a cat's face, a coffee cup) and two
shapes cut out by their masks (a horse silhouette, the scikit-image logo), 0 to 3 objects an
image (some images are negatives), at 12% to 45% of the image's long side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from edgetl.core.files import atomic_write_bytes, atomic_write_text

CLASSES = ["cat", "coffee", "horse", "logo"]
# A second set from other photos (tools/bench_detect.py): the first set's objects are its
# backgrounds, so neither set's objects are the other's classes.
OTHER_CLASSES = ["face", "coin", "wheel"]
SPLITS = {"train": 320, "val": 200, "test": 200}  # images per split
IMAGE_SIZES = ((320, 240), (288, 288), (256, 320))  # (width, height)
MAX_OVERLAP = 0.25  # IoU above which a new object is placed again (objects stay visible)


@dataclass(frozen=True)
class Cutout:
    """An object: its RGB pixels and where they are opaque."""

    rgb: Image.Image
    mask: Image.Image


def _cutouts() -> list[Cutout]:
    from skimage import data

    def patch(array: np.ndarray, rows: slice, cols: slice) -> Cutout:
        rgb = Image.fromarray(np.ascontiguousarray(array[rows, cols]))
        return Cutout(rgb, Image.new("L", rgb.size, 255))

    horse = ~data.horse()  # True where the horse is
    rgba = data.logo()
    return [
        patch(data.chelsea(), slice(20, 250), slice(110, 330)),  # the cat's face
        patch(data.coffee(), slice(30, 390), slice(120, 470)),  # the cup on its saucer
        Cutout(
            Image.new("RGB", horse.shape[::-1], (70, 45, 30)),
            Image.fromarray((horse * 255).astype(np.uint8)),
        ),  # fmt: skip
        Cutout(Image.fromarray(rgba[..., :3]), Image.fromarray(rgba[..., 3])),
    ]


def _round(array: np.ndarray) -> Cutout:
    """A disc cut out of a square crop (coins, the colour wheel)."""
    rgb = Image.fromarray(np.ascontiguousarray(np.stack([array] * 3, -1) if array.ndim == 2
                                               else array))  # fmt: skip
    side = min(rgb.size)
    yy, xx = np.mgrid[: rgb.size[1], : rgb.size[0]]
    disc = (xx - rgb.size[0] / 2) ** 2 + (yy - rgb.size[1] / 2) ** 2 <= (side / 2) ** 2
    return Cutout(rgb, Image.fromarray((disc * 255).astype(np.uint8)))


def _other_cutouts() -> list[Cutout]:
    from skimage import data

    face = Image.fromarray(np.ascontiguousarray(data.astronaut()[10:250, 150:330]))
    return [
        Cutout(face, Image.new("L", face.size, 255)),
        _round(data.coins()[20:92, 10:82]),
        _round(data.colorwheel()[5:365, 5:365]),
    ]


def _other_backgrounds() -> list[np.ndarray]:
    from skimage import data

    gray = [data.page(), data.cell(), data.grass()]
    color = [data.retina(), data.coffee(), data.chelsea()]
    return [np.stack([g] * 3, -1) for g in gray] + color


KITS = {  # name -> (classes, objects, backgrounds)
    "scenes": (CLASSES, lambda: _cutouts(), lambda: _backgrounds()),
    "other": (OTHER_CLASSES, lambda: _other_cutouts(), lambda: _other_backgrounds()),
}


def _backgrounds() -> list[np.ndarray]:
    from skimage import data

    gray = [data.brick(), data.grass(), data.gravel(), data.moon(), data.camera()]
    color = [data.hubble_deep_field(), data.immunohistochemistry(), data.rocket()]
    return [np.stack([g] * 3, -1) for g in gray] + color


def make_scenes(
    root: Path, seed: int = 0, sizes: dict[str, int] | None = None, kit: str = "scenes"
) -> Path:
    """Write the set under `root` (YOLO: data.yaml, images/<split>, labels/<split>)."""
    rng = np.random.default_rng(seed)
    classes, objects, grounds = KITS[kit]
    cutouts, backgrounds = objects(), grounds()
    for split, count in (sizes or SPLITS).items():
        for index in range(count):
            image, lines = _scene(rng, cutouts, backgrounds)
            stem = f"{split}_{index:04d}"
            atomic_write_bytes(root / "images" / split / f"{stem}.png", _png(image))
            atomic_write_text(root / "labels" / split / f"{stem}.txt", "".join(lines))
    names = "".join(f"  - {name}\n" for name in classes)
    atomic_write_text(
        root / "data.yaml", f"# edgetl's offline detection set, seed {seed}\nnames:\n{names}"
    )
    return root


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _scene(
    rng: np.random.Generator, cutouts: list[Cutout], backgrounds: list[np.ndarray]
) -> tuple[Image.Image, list[str]]:
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    canvas = _background(rng, backgrounds, width, height)
    placed: list[tuple[int, int, int, int]] = []
    lines = []
    for _ in range(rng.choice(4, p=[0.1, 0.35, 0.35, 0.2])):
        label = int(rng.integers(len(cutouts)))
        box = _paste(rng, canvas, cutouts[label], placed)
        if box is None:
            continue
        placed.append(box)
        x1, y1, x2, y2 = box
        lines.append(
            f"{label} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n"
        )
    return canvas, lines


def _background(
    rng: np.random.Generator, backgrounds: list[np.ndarray], width: int, height: int
) -> Image.Image:
    source = backgrounds[rng.integers(len(backgrounds))]
    rows, cols = source.shape[:2]
    scale = rng.uniform(0.5, 1.0)
    h, w = (
        int(min(rows, cols * height / width) * scale),
        int(min(cols, rows * width / height) * scale),
    )
    top, left = rng.integers(rows - h + 1), rng.integers(cols - w + 1)
    crop = Image.fromarray(np.ascontiguousarray(source[top : top + h, left : left + w]))
    tint = np.asarray(rng.uniform(0.6, 1.2, 3), np.float32)
    pixels = np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR), np.float32)
    return Image.fromarray((pixels * tint).clip(0, 255).astype(np.uint8))


def _paste(
    rng: np.random.Generator,
    canvas: Image.Image,
    cutout: Cutout,
    placed: list[tuple[int, int, int, int]],
) -> tuple[int, int, int, int] | None:
    """Paste `cutout` where it overlaps no placed object by more than MAX_OVERLAP; its box
    (x1, y1, x2, y2) in pixels, the opaque pixels' bounds; None after 20 tries."""
    from edgetl.core.measures.detection import iou

    width, height = canvas.size
    others = np.asarray(placed, np.float32).reshape(-1, 4)
    for _ in range(20):
        side = rng.uniform(0.12, 0.45) * max(width, height)
        scale = side / max(cutout.rgb.size)
        w, h = (max(8, round(v * scale)) for v in cutout.rgb.size)
        if w >= width or h >= height:
            continue
        if rng.random() < 0.5:
            rgb = cutout.rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            mask = cutout.mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            rgb, mask = cutout.rgb, cutout.mask
        rgb = ImageEnhance.Brightness(rgb.resize((w, h), Image.Resampling.BILINEAR)).enhance(
            rng.uniform(0.7, 1.3)
        )
        mask = mask.resize((w, h), Image.Resampling.NEAREST)
        x, y = int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1))
        bounds = mask.getbbox()
        if bounds is None:
            continue
        box = (x + bounds[0], y + bounds[1], x + bounds[2], y + bounds[3])
        if len(others) and iou(np.asarray([box], np.float32), others).max() > MAX_OVERLAP:
            continue
        canvas.paste(rgb, (x, y), mask)
        return box
    return None
