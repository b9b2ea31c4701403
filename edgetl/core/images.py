"""Image files: which files are images, and the one decode every role goes through."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgetl.core.errors import EdgetlError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    """Every image file under `folder`, sorted; hidden files (macOS `._x.jpg`, `.DS_Store`)
    skipped. The one listing training, calibration and predict share. A name that is not
    UTF-8 is exit 2 naming it (it would reach JSON records and hashes)."""
    return sorted(
        check_utf8_name(p)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def check_utf8_name(path: Path) -> Path:
    """`path`, or EdgetlError when its name is not valid UTF-8 (Python holds such bytes as
    surrogate escapes, which no record, hash or remote command can carry)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise EdgetlError(
            f"{shown}: its name is not valid UTF-8; rename it (edgetl records file names in UTF-8)"
        ) from None
    return path


def check_image(path: Path, data: bytes) -> None:
    """An image file by its header (format, size, the decompression-bomb limit), without
    decoding its pixels: a truncated file passes here and fails at its one full decode."""
    with _named_errors(path), Image.open(io.BytesIO(data)) as image:
        image.size  # noqa: B018 - the header is parsed on open; size proves it


def read_image(path: Path, data: bytes | None = None) -> Image.Image:
    """Decode an image fully (a truncated file fails here, not later) and make it RGB."""
    with _named_errors(path):
        source = io.BytesIO(data) if data is not None else path
        with Image.open(source) as image:
            image.load()
            return as_rgb(image)


@contextmanager
def _named_errors(path: Path) -> Iterator[None]:
    """PIL's errors as EdgetlError naming the file and what to do."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise EdgetlError(
            f"{path}: {exc}; an image this large is refused as a possible decompression bomb. "
            "Resize it, or remove it from the data"
        ) from exc
    except UnidentifiedImageError as exc:
        raise EdgetlError(
            f"{path}: not an image file (no known image format); fix or remove this file"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for damaged files
        raise EdgetlError(f"{path}: cannot decode this image ({exc}); fix or remove it") from exc


EXIF_ORIENTATION = 0x0112
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def as_rgb(image: Image.Image) -> Image.Image:
    """Any image as the 8-bit RGB pixels a person sees: the one place training, calibration,
    the reference set, predict and bench all decode through.

    - EXIF orientation applied: a phone photo stored sideways is turned upright.
    - 16-bit (I;16, I) scaled to 8 bits (v / 257), float (F) from 0..1 (or 0..255):
      PIL's own convert("RGB") clips them, making 99.6% of a 16-bit PNG's pixels 255.
    - grayscale, palette, CMYK and RGBA become RGB (alpha laid over white).
    """
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT:
        pixels = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.clip(np.rint(pixels / 257.0), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if pixels.max(initial=0.0) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8))
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")
