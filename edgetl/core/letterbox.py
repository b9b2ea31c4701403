"""A detector's preprocessing: the whole image scaled to fit a square (its aspect kept), padded
at the right and bottom, so that every box maps back to the original pixels by one division.

Decided once at finetune and stored in the run and the artifact (`"resize": "letterbox"` in
the preprocessing record), implemented with PIL and NumPy only: training, calibration, the
guard and the device feed the model the same tensors and map boxes back the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from edgetl.core.images import as_rgb
from edgetl.core.preprocess import INTERPOLATIONS, Preprocess

LETTERBOX = "letterbox"
PAD_VALUE = 114  # the grey YOLO-style letterboxes pad with: the mean of no image in particular


@dataclass(frozen=True)
class Letterbox(Preprocess):
    """Scale the long side to `size`, pad to size x size; `flip` mirrors the image first (the
    cached second view of training images; never used at inference)."""

    flip: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in super().to_dict().items() if k not in ("crop_pct", "flip")}
        data["resize"] = LETTERBOX
        if self.flip:
            data["flip"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Letterbox:
        base = Preprocess.from_dict({"crop_pct": 1.0, **data})
        return cls(base.size, base.mean, base.std, base.interpolation, 1.0, bool(data.get("flip")))

    def unflipped(self) -> Letterbox:
        return Letterbox(self.size, self.mean, self.std, self.interpolation, 1.0)

    def scale(self, width: int, height: int) -> float:
        """Input pixels per original pixel."""
        return self.size / max(width, height)

    def crop(self, image: Image.Image) -> np.ndarray:
        """PIL image -> uint8 CHW array of size x size: scaled, padded right and bottom."""
        image = as_rgb(image)
        if self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        width, height = image.size
        scale = self.scale(width, height)
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        resample = INTERPOLATIONS.get(self.interpolation, Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (self.size, self.size), (PAD_VALUE,) * 3)
        canvas.paste(image.resize(new, resample), (0, 0))
        return np.ascontiguousarray(np.asarray(canvas, dtype=np.uint8).transpose(2, 0, 1))

    def to_input(self, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Boxes (x1, y1, x2, y2) in the original image's pixels -> the model input's."""
        width, height = size
        boxes = np.asarray(boxes, np.float32)
        if self.flip:
            boxes = np.stack(
                [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1
            )
        return (boxes * self.scale(width, height)).astype(np.float32)

    def to_original(self, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Boxes in the model input's pixels -> the original image's, clipped to it."""
        width, height = size
        out = np.asarray(boxes, np.float32) / self.scale(width, height)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out


def preprocess_from_dict(data: dict[str, Any]) -> Preprocess:
    """A stored preprocessing record: a letterbox (detectors) or the classifier's crop."""
    if data.get("resize") == LETTERBOX:
        return Letterbox.from_dict(data)
    return Preprocess.from_dict(data)
