"""WebDataset-style tar shards as a dataset (`--data 'shards/train-{0000..0099}.tar'`), the
layout timm and webdataset read: in each tar, `KEY.jpg` (or another image suffix) and
`KEY.cls` (the class index as text) per sample. Read in place, never unpacked: the scan reads
each member once (for the fingerprint and the content sha256) and records where it lies, and
an image is later read from its shard by offset.

Class names are the indices ("0", "1", ...), or the lines of a `classes.txt` beside the
shards when there is one.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

from PIL import Image

from edgetl.core.data.imageset import Loader
from edgetl.core.data.splitting import fingerprint_sample
from edgetl.core.errors import EdgetlError
from edgetl.core.images import IMAGE_SUFFIXES, check_image, read_image

BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def is_shard_spec(spec: str) -> bool:
    return spec.endswith(".tar") or bool(BRACES.search(spec))


def expand(spec: str) -> list[Path]:
    """`a-{000..003}.tar` -> a-000.tar ... a-003.tar (zero padding kept); no shell involved."""
    match = BRACES.search(spec)
    if match is None:
        return [Path(spec)]
    first, last = match.group(1), match.group(2)
    if int(last) < int(first):
        raise EdgetlError(f"--data {spec}: the range {match.group(0)} runs backwards")
    width = len(first)
    head, tail = spec[: match.start()], spec[match.end() :]
    return [
        path
        for number in range(int(first), int(last) + 1)
        for path in expand(f"{head}{number:0{width}d}{tail}")
    ]


class ShardLoader(Loader):
    """Reads a sample's image from its shard by offset (picklable: paths and numbers only)."""

    def __init__(self, places: dict[str, tuple[Path, int, int]]):
        self.places = places  # key -> (shard, offset of the member's data, size)

    def __call__(self, key: str) -> Image.Image:
        shard, offset, size = self.places[key]
        with shard.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
        return read_image(Path(f"{shard}:{key}"), data)


def scan_shards(
    spec: str, hasher: Any
) -> tuple[list[str], list[str], list[int], list[bytes], ShardLoader]:
    """Classes, sample keys, labels, content digests and the loader of the shards of `spec`."""
    paths = expand(spec)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise EdgetlError(f"--data {spec}: no such shard {missing[0]} ({len(missing)} missing)")
    keys: list[str] = []
    labels: list[int] = []
    digests: list[bytes] = []
    places: dict[str, tuple[Path, int, int]] = {}
    for path in paths:
        for key, member, data, label in _samples(path):
            name = f"{path.name}/{key}{Path(member.name).suffix}"
            check_image(Path(f"{path}:{member.name}"), data)
            keys.append(name)
            labels.append(label)
            digests.append(fingerprint_sample(hasher, name, label, data))
            places[name] = (path.resolve(), member.offset_data, member.size)
    if not keys:
        raise EdgetlError(f"--data {spec}: the shards hold no samples (KEY.jpg with KEY.cls)")
    count = max(labels) + 1
    classes = _class_names(paths[0].parent, count, spec)
    if len(set(labels)) < 2:
        raise EdgetlError(f"--data {spec}: one class only; a classifier needs at least two")
    return classes, keys, labels, digests, ShardLoader(places)


def _samples(path: Path) -> list[tuple[str, tarfile.TarInfo, bytes, int]]:
    """(key, image member, its bytes, class index) for each complete sample of one shard."""
    images: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    labels: dict[str, int] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stem, suffix = member.name.rsplit(".", 1) if "." in member.name else ("", "")
                reader = tar.extractfile(member)
                if reader is None:
                    continue
                if f".{suffix.lower()}" in IMAGE_SUFFIXES:
                    images[stem] = (member, reader.read())
                elif suffix == "cls":
                    labels[stem] = _label(reader.read(), path, member.name)
    except tarfile.TarError as exc:
        raise EdgetlError(f"{path}: not a readable tar shard ({exc}); fix or remove it") from exc
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        raise EdgetlError(f"{path}: {unlabelled[0]} has an image but no .cls label")
    return [(stem, member, data, labels[stem]) for stem, (member, data) in images.items()]


def _label(data: bytes, path: Path, name: str) -> int:
    try:
        label = int(data.decode().strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise EdgetlError(f"{path}: {name} is not a class index") from exc
    if label < 0:
        raise EdgetlError(f"{path}: {name} is a negative class index")
    return label


def _class_names(folder: Path, count: int, spec: str) -> list[str]:
    names_file = folder / "classes.txt"
    if not names_file.is_file():
        return [str(index) for index in range(count)]
    names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    if len(names) < count:
        raise EdgetlError(f"{names_file}: {len(names)} names for the {count} classes of {spec}")
    return names
