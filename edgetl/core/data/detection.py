"""Detection datasets in the two layouts users already have, read and checked whole:

    YOLO   DIR/data.yaml (names), DIR/images/<split>/*.jpg, DIR/labels/<split>/*.txt
           (one object a line: class cx cy w h, normalized to the image)
    COCO   DIR/annotations/instances_<split>.json, images in DIR/images/<split>/ or DIR/<split>/

Every box comes out as (x1, y1, x2, y2) in the image's pixels (core/measures/detection.Objects).
A bad label is exit 2 naming the file and the line (YOLO) or the annotation id (COCO); an
image without labels (no file, or an empty one) is a negative, counted.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.core.data.splits import ROLES
from edgetl.core.errors import EdgetlError
from edgetl.core.images import list_images
from edgetl.core.measures.detection import Objects
from edgetl.core.ui import counted

EDGE_TOLERANCE = 1e-3  # normalized: labelling tools round boxes that touch the image's edge


@dataclass
class DetectionSet:
    """One split: image files (relative to `root`), their sizes and their objects."""

    root: Path
    classes: list[str]
    keys: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height)
    objects: list[Objects] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)  # sha256 of each file's content
    negatives: int = 0  # images without a label (no file, or an empty one)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: str, image: tuple[tuple[int, int], bytes], objects: Objects) -> None:
        size, digest = image
        self.keys.append(key)
        self.sizes.append(size)
        self.digests.append(digest)
        self.objects.append(objects)
        self.negatives += not len(objects)

    def subset(self, indices: list[int] | np.ndarray) -> DetectionSet:
        picked = DetectionSet(self.root, self.classes)
        for i in (int(i) for i in indices):
            picked.add(self.keys[i], (self.sizes[i], self.digests[i]), self.objects[i])
        return picked

    def strata(self) -> np.ndarray:
        """One label per image to stratify a split by: its most frequent class (negatives: one
        more stratum)."""
        classes = len(self.classes)
        return np.asarray([
            np.bincount(o.classes, minlength=classes).argmax() if len(o) else classes
            for o in self.objects
        ], np.int64)  # fmt: skip


def layout(root: Path) -> str | None:
    """The layout: "yolo", "coco", or None (a classification folder, or nothing edgetl reads)."""
    if (root / "data.yaml").is_file():
        return "yolo"
    if any((root / "annotations").glob("instances_*.json")):
        return "coco"
    return None


def read_detection(root: Path) -> dict[str, DetectionSet]:
    """The splits present under `root`, in either layout; EdgetlError naming what is wrong."""
    found = layout(root)
    if found == "yolo":
        return read_yolo(root)
    if found == "coco":
        return read_coco(root)
    raise EdgetlError(
        f"--data {root}: not a detection dataset; give a YOLO folder (data.yaml, images/, "
        "labels/) or a COCO folder (annotations/instances_<split>.json)"
    )


# -- YOLO --------------------------------------------------------------------------------------
def read_yolo(root: Path) -> dict[str, DetectionSet]:
    classes = _yolo_names(root / "data.yaml")
    splits = {}
    for split in ROLES:
        images = root / "images" / split
        if images.is_dir():
            found = DetectionSet(root, classes)
            for path in counted(list_images(images), f"reading images/{split} (sizes, sha256)"):
                size, digest = _size(path)
                label = root / "labels" / split / f"{path.stem}.txt"
                objects = _yolo_label(label, size, len(classes)) if label.is_file() else None
                found.add(
                    path.relative_to(root).as_posix(), (size, digest), objects or Objects.none()
                )
            splits[split] = found
    if not splits:
        raise EdgetlError(f"{root}: no images/train, images/val or images/test folder")
    return splits


def _yolo_names(path: Path) -> list[str]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EdgetlError(f"{path}: cannot read it as YAML ({exc})") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):  # {0: person, 1: car}
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise EdgetlError(f"{path}: names must be numbered 0..N-1, found {keys}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise EdgetlError(f"{path}: give the class names as `names: [a, b, ...]`")
    return names


def _yolo_label(path: Path, size: tuple[int, int], classes: int) -> Objects:
    """One label file: `class cx cy w h` a line (normalized), as pixel boxes."""
    width, height = size
    boxes, labels = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 5:
            raise EdgetlError(f"{where}: expected `class cx cy w h`, found {line.strip()!r}")
        try:
            label = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError as exc:
            raise EdgetlError(f"{where}: not numbers: {line.strip()!r}") from exc
        if not 0 <= label < classes:
            raise EdgetlError(f"{where}: class {label} is not one of data.yaml's 0..{classes - 1}")
        corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        _check_box(where, corners, 1.0, 1.0)
        boxes.append([v * scale for v, scale in zip(corners, (width, height) * 2, strict=True)])
        labels.append(label)
    return _objects(boxes, labels, (width, height))


# -- COCO --------------------------------------------------------------------------------------
def read_coco(root: Path) -> dict[str, DetectionSet]:
    splits = {}
    for split in ROLES:
        path = root / "annotations" / f"instances_{split}.json"
        if path.is_file():
            splits[split] = _coco_split(root, split, path)
    if not splits:
        raise EdgetlError(f"{root}: no annotations/instances_<train|val|test>.json")
    return splits


def _coco_split(root: Path, split: str, path: Path) -> DetectionSet:
    data = _json(path)
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(categories)}
    found = DetectionSet(root, [str(c["name"]) for c in categories])
    by_image: dict[Any, list[dict]] = {}
    for annotation in data.get("annotations", []):
        by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    folder = root / "images" / split if (root / "images" / split).is_dir() else root / split
    for image in counted(data.get("images", []), f"reading {split}'s images (sizes, sha256)"):
        file = folder / str(image.get("file_name", ""))
        if not file.is_file():
            raise EdgetlError(f"{path}: image {image.get('id')}'s file {file} does not exist")
        size = (int(image["width"]), int(image["height"]))
        real, digest = _size(file)
        if real != size:
            raise EdgetlError(
                f"{path}: image {image.get('id')} is {real[0]} x {real[1]} pixels, the file "
                f"says {size[0]} x {size[1]}; fix its width and height"
            )
        boxes, labels = [], []
        for annotation in by_image.get(image.get("id"), []):
            where = f"{path}: annotation {annotation.get('id')}"
            if annotation.get("category_id") not in index:
                raise EdgetlError(f"{where}: category {annotation.get('category_id')} unknown")
            x, y, w, h = (float(v) for v in annotation.get("bbox", [math.nan] * 4))
            _check_box(where, (x, y, x + w, y + h), size[0], size[1])
            boxes.append((x, y, x + w, y + h))
            labels.append(index[annotation["category_id"]])
        found.add(file.relative_to(root).as_posix(), (size, digest), _objects(boxes, labels, size))
    return found


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgetlError(f"{path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise EdgetlError(f"{path}: not a COCO annotation file (expected an object)")
    return data


# -- shared ------------------------------------------------------------------------------------
def _check_box(where: str, box: tuple[float, ...], width: float, height: float) -> None:
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        raise EdgetlError(f"{where}: the box is not finite ({box})")
    if not (x2 > x1 and y2 > y1):
        raise EdgetlError(f"{where}: the box has no area ({box})")
    slack_x, slack_y = EDGE_TOLERANCE * width, EDGE_TOLERANCE * height
    if x1 < -slack_x or y1 < -slack_y or x2 > width + slack_x or y2 > height + slack_y:
        raise EdgetlError(f"{where}: the box {box} lies outside the image ({width} x {height})")


def _objects(boxes: list[Any], labels: list[int], size: tuple[int, int]) -> Objects:
    if not boxes:
        return Objects.none()
    array = np.asarray(boxes, np.float32)
    array[:, [0, 2]] = array[:, [0, 2]].clip(0, size[0])  # within the edge tolerance
    array[:, [1, 3]] = array[:, [1, 3]].clip(0, size[1])
    return Objects(array, np.asarray(labels, np.int64))


def _size(path: Path) -> tuple[tuple[int, int], bytes]:
    """The image's (width, height) and its content's sha256 (the feature cache's key)."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            return image.size, hashlib.sha256(data).digest()
    except OSError as exc:
        raise EdgetlError(f"{path}: not an image file ({exc})") from exc
