"""The reference set a detector artifact carries: test images letterboxed (uint8), their
original sizes and boxes, and the detections of FP32 PyTorch and of the artifact on the host,
so that a device measures mAP and checks an engine it built with nothing but the artifact.

Stored as an .npz read with allow_pickle=False; each list of per-image objects is flattened
into (boxes, classes, scores, image index) arrays. Normalization comes from the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.artifact.reference import read_arrays, write_arrays
from edgetl.core.errors import EdgetlError
from edgetl.core.measures.detection import Objects

DETECTION_REFERENCE_FILE = "reference.npz"
_PARTS = ("truth", "fp32", "artifact")  # the per-image object lists, by their prefix
_REQUIRED = ("images", "sizes", "keys", "classes") + tuple(
    f"{part}_{array}" for part in _PARTS for array in ("boxes", "classes", "image")
)


@dataclass
class DetectionReference:
    images: np.ndarray  # (N, 3, S, S) uint8, letterboxed, not normalized
    sizes: list[tuple[int, int]]  # each image's original (width, height)
    keys: list[str]  # where each image came from (the split's keys)
    classes: list[str]
    truth: list[Objects]  # boxes in original pixels
    fp32: list[Objects]  # FP32 PyTorch's detections
    artifact: list[Objects]  # the artifact's own on the host (its runtime or the host proxy)

    def __len__(self) -> int:
        return len(self.keys)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "images": self.images,
            "sizes": np.asarray(self.sizes, np.int64).reshape(-1, 2),
            "keys": np.asarray(self.keys, dtype=np.str_),
            "classes": np.asarray(self.classes, dtype=np.str_),
        }
        for name in _PARTS:
            arrays.update(_flat(name, getattr(self, name)))
        write_arrays(path, arrays)

    @classmethod
    def load(cls, path: Path) -> DetectionReference:
        data = read_arrays(path, "detector reference set", _REQUIRED)
        images, sizes = data["images"], data["sizes"]
        keys = [str(k) for k in data["keys"]]
        classes = [str(c) for c in data["classes"]]
        parts = {name: _unflat(name, data, len(keys), path) for name in _PARTS}
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(keys):
            raise EdgetlError(f"{path}: reference images are not (N, 3, S, S) uint8; re-run export")
        found = [(int(w), int(h)) for w, h in sizes]
        return cls(images, found, keys, classes, parts["truth"], parts["fp32"], parts["artifact"])


def fp32_answers(path: Path) -> tuple[list[str], list[Objects]]:
    """A reference set's keys and FP32 PyTorch's detections, its images left unread (an
    artifact's agreement needs no pixels)."""
    required = ("keys", "fp32_boxes", "fp32_classes", "fp32_image")
    data = read_arrays(path, "detector reference set", required, only=(*required, "fp32_scores"))
    keys = [str(k) for k in data["keys"]]
    return keys, _unflat("fp32", data, len(keys), path)


def _flat(name: str, objects: list[Objects]) -> dict[str, np.ndarray]:
    scored = all(o.scores is not None for o in objects) and name != "truth"
    flat = {
        f"{name}_boxes": np.concatenate([o.boxes for o in objects] or [np.zeros((0, 4))]),
        f"{name}_classes": np.concatenate([o.classes for o in objects] or [np.zeros(0)]),
        f"{name}_image": np.repeat(np.arange(len(objects)), [len(o) for o in objects]),
    }
    flat[f"{name}_boxes"] = flat[f"{name}_boxes"].astype(np.float32).reshape(-1, 4)
    flat[f"{name}_classes"] = flat[f"{name}_classes"].astype(np.int64)
    if scored:
        scores = [o.scores for o in objects if o.scores is not None]
        flat[f"{name}_scores"] = np.concatenate(scores or [np.zeros(0)]).astype(np.float32)
    return flat


def _unflat(name: str, data: dict[str, np.ndarray], images: int, path: Path) -> list[Objects]:
    boxes, classes = data[f"{name}_boxes"], data[f"{name}_classes"]
    owner = data[f"{name}_image"]
    scores = data.get(f"{name}_scores")
    if (
        boxes.shape != (len(owner), 4)
        or len(classes) != len(owner)
        or (scores is not None and len(scores) != len(owner))
        or (len(owner) and (owner.min() < 0 or owner.max() >= images))
    ):
        raise EdgetlError(f"{path}: {name}'s boxes, classes, scores and images do not line up; "
                          "re-run export")  # fmt: skip
    found = []
    for i in range(images):
        mine = owner == i
        scored = None if scores is None else scores[mine].astype(np.float32)
        found.append(
            Objects(boxes[mine].astype(np.float32), classes[mine].astype(np.int64), scored)
        )
    return found
