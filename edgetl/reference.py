"""The reference set an artifact carries: test images after resize/crop (uint8), their labels,
and the FP32 PyTorch logits, so accuracy and agreement can be measured on the device alone.

Stored as an .npz read with allow_pickle=False; normalization is reapplied from the manifest.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.artifacts import atomic_write_bytes
from edgetl.errors import EdgetlError

REFERENCE_FILE = "reference.npz"


@dataclass
class ReferenceSet:
    images: np.ndarray  # (N, 3, S, S) uint8, resized and cropped, not normalized
    labels: np.ndarray  # (N,) int64
    fp32_logits: np.ndarray  # (N, classes) float32, from the PyTorch model
    keys: list[str]  # where each image came from (dataset keys)
    # The artifact's own logits on the host (its runtime, or the host proxy): what an engine
    # built on the device is checked against.
    artifact_logits: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {
            "images": self.images,
            "labels": self.labels,
            "fp32_logits": self.fp32_logits,
            "keys": np.asarray(self.keys, dtype=np.str_),
        }
        if self.artifact_logits is not None:
            arrays["artifact_logits"] = self.artifact_logits
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> ReferenceSet:
        try:
            with np.load(path, allow_pickle=False) as data:
                images, labels = data["images"], data["labels"]
                logits, keys = data["fp32_logits"], [str(k) for k in data["keys"]]
                artifact = data.get("artifact_logits")
        except (OSError, ValueError, KeyError) as exc:
            raise EdgetlError(
                f"{path}: not a readable reference set ({exc}); re-run export"
            ) from exc
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise EdgetlError(f"{path}: reference images are not (N, 3, S, S) uint8; re-run export")
        return cls(images, labels.astype(np.int64), logits.astype(np.float32), keys, artifact)
