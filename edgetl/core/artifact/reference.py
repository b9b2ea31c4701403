"""The reference set an artifact carries: test images after resize/crop (uint8), their labels,
and the FP32 PyTorch logits, so accuracy and agreement can be measured on the device alone.

Stored as an .npz read with allow_pickle=False; normalization is reapplied from the manifest.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_bytes

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
    # The first 16 bytes of the sha256 of every train and val image's content, sorted: bench
    # excludes those images from a "held-out" folder (fitted or chosen on, so not held out).
    seen: np.ndarray | None = None  # (M, 16) uint8

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "images": self.images,
            "labels": self.labels,
            "fp32_logits": self.fp32_logits,
            "keys": np.asarray(self.keys, dtype=np.str_),
        }
        if self.artifact_logits is not None:
            arrays["artifact_logits"] = self.artifact_logits
        if self.seen is not None:
            arrays["seen_sha256"] = self.seen
        write_arrays(path, arrays)

    @classmethod
    def load(cls, path: Path) -> ReferenceSet:
        data = read_arrays(path, "reference set", ("images", "labels", "fp32_logits", "keys"))
        images, labels = data["images"], data["labels"]
        logits, keys = data["fp32_logits"], [str(k) for k in data["keys"]]
        artifact = data.get("artifact_logits")
        seen = data.get("seen_sha256")
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise EdgetlError(f"{path}: reference images are not (N, 3, S, S) uint8; re-run export")
        if seen is not None and (seen.dtype != np.uint8 or seen.ndim != 2 or seen.shape[1] != 16):
            raise EdgetlError(f"{path}: seen_sha256 is not (M, 16) uint8; re-run export")
        return cls(images, labels.astype(np.int64), logits.astype(np.float32), keys, artifact, seen)

    def seen_before(self, digests: list[bytes]) -> np.ndarray:
        """Which of these content digests are train or val images of the run (bool mask)."""
        if self.seen is None or not digests:
            return np.zeros(len(digests), bool)
        known = {bytes(row) for row in self.seen}
        return np.asarray([digest[:16] in known for digest in digests])


def write_arrays(path: Path, arrays: dict[str, Any]) -> None:
    """An .npz of `arrays`, compressed, written atomically (never a half-written set).

    The same arrays give the same bytes: numpy's savez stamps each member with the time of
    writing, so an attack file crafted twice from the same inputs differed; here every
    member carries one fixed date (np.load reads either alike)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(value), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def read_arrays(
    path: Path,
    what: str,
    required: tuple[str, ...],
    remedy: str = "re-run export",
    only: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Every array of an .npz (no pickle; `only`: just those, the others never read), or
    EdgetlError naming the file when it is not readable or lacks one of `required`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if only is None or name in only}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # a cut file: no zip directory
        raise EdgetlError(f"{path}: not a readable {what} ({exc}); {remedy}") from exc
    missing = [name for name in required if name not in arrays]
    if missing:
        raise EdgetlError(f"{path}: not a readable {what} (no {', '.join(missing)}); {remedy}")
    return arrays


def seen_digests(*parts: list[bytes] | None) -> np.ndarray | None:
    """The (M, 16) uint8 table of `ReferenceSet.seen` from image sets' digests."""
    if any(part is None for part in parts):
        return None
    unique = sorted({digest[:16] for part in parts for digest in part or []})
    return np.frombuffer(b"".join(unique), np.uint8).reshape(len(unique), 16)
