"""The built-in `digits` dataset: scikit-learn's 8x8 handwritten digits, rendered as RGB
images (scikit-learn is imported only when it is asked for by name)."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from edgetl.core.data.imageset import ImageSet, Loader
from edgetl.core.data.splits import Splits
from edgetl.core.data.splitting import split_words, stratified_split

DIGITS_RENDERING = "8x8 in a 10x10 field, ink 0..16 -> 0..255, gray -> RGB"


class _DigitsLoader(Loader):
    def __init__(self, images: np.ndarray):
        self.images = images

    def __call__(self, key: str) -> Image.Image:
        pixels = self.images[int(key.split(":")[1])]
        # A 1-pixel margin around the 8x8 field, as MNIST pads its digits: the ink that
        # touches the border survives the center crop.
        canvas = np.zeros((10, 10), np.uint8)
        canvas[1:9, 1:9] = (pixels * (255.0 / 16.0)).astype(np.uint8)
        return Image.fromarray(canvas, mode="L").convert("RGB")


def digits() -> tuple[np.ndarray, np.ndarray, str]:
    """Images, labels and the fingerprint the run records (the pixels and their rendering)."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    images = np.asarray(data.images, dtype=np.float32)
    labels = np.asarray(data.target, dtype=np.int64)
    # The rendering is part of the data: change DIGITS_RENDERING when _DigitsLoader changes.
    fingerprint = hashlib.sha256(
        DIGITS_RENDERING.encode() + images.tobytes() + labels.tobytes()
    ).hexdigest()
    return images, labels, fingerprint


def load_digits(val_fraction: float, test_fraction: float, seed: int) -> Splits:
    images, labels, fingerprint = digits()
    everything = ImageSet(
        [f"digits:{i}" for i in range(len(labels))],
        labels,
        _DigitsLoader(images),
        [hashlib.sha256(image.tobytes()).digest() for image in images],
    )
    train, val, test = stratified_split(labels, (val_fraction, test_fraction), seed)
    return Splits(
        source="digits",
        classes=[str(d) for d in range(10)],
        train=everything.subset(train),
        val=everything.subset(val),
        test=everything.subset(test),
        fingerprint=fingerprint,
        strategy=split_words(val_fraction, test_fraction, seed),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
