"""The preprocessing spec, implemented once with PIL and NumPy only, so that training,
calibration, parity checks and the on-device benchmark feed the model identical tensors."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from edgetl.core.images import as_rgb

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocess:
    """Resize the short side to `size / crop_pct`, center-crop `size`, scale to [0,1], normalize.

    Split in two so that a reference set can be stored compactly as the uint8 crop
    (`crop`) and normalized on the device from the manifest (`normalize`).
    """

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
        mean, std = (tuple(float(v) for v in data[key]) for key in ("mean", "std"))
        return cls(
            size=int(data["size"]),
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            interpolation=str(data["interpolation"]),
            crop_pct=float(data["crop_pct"]),
        )

    def crop(self, image: Image.Image) -> np.ndarray:
        """PIL image -> uint8 CHW array, upright, resized and center-cropped."""
        image = as_rgb(image)
        # Same arithmetic as torchvision's Resize(int) + CenterCrop, which timm uses.
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        resample = INTERPOLATIONS.get(self.interpolation, Image.Resampling.BICUBIC)
        image = image.resize((new_w, new_h), resample)
        left = int(round((new_w - self.size) / 2.0))
        top = int(round((new_h - self.size) / 2.0))
        image = image.crop((left, top, left + self.size, top + self.size))
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (..., 3, H, W) -> float32 model input."""
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return np.ascontiguousarray((pixels.astype(np.float32) / 255.0 - mean) / std)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """PIL image -> float32 CHW array."""
        return self.normalize(self.crop(image))
