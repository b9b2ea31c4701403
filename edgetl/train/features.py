"""Backbone features of a dataset's splits, from the per-image cache (feature_store.py) and
one extraction of the images it lacks (extract.py).

The backbone is frozen, so an image's features never change for a given backbone, weights,
preprocessing and AMP setting: each image is extracted once and read by every later run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from edgetl.core.data.imageset import ImageSet
from edgetl.core.data.splits import ROLES, Splits
from edgetl.core.events import say
from edgetl.core.outputs import cache_dir
from edgetl.train.backbones import Backbone
from edgetl.train.distributed import Group
from edgetl.train.extract import extract
from edgetl.train.feature_store import FeatureStore
from edgetl.train.loop import HeadTraining
from edgetl.train.row_precision import RowPrecision, measure, record, recorded

ROWS_PER_SHARD = 2048  # rows per cache shard: what a crash or a bad image can cost at most


def default_cache_dir() -> Path:
    return cache_dir("features", "EDGETL_CACHE_DIR")


class HasParts(Protocol):
    """What the cache reads of a dataset: an image set for each role (one loader)."""

    def part(self, role: str) -> ImageSet: ...


@dataclass(frozen=True)
class CacheReport:
    cached: int  # distinct images read from the cache
    new: int  # distinct images extracted now
    seconds: float

    @property
    def state(self) -> str:
        """What the run records: "hit" when nothing was extracted."""
        return "hit" if not self.new else f"miss ({self.new:,} new, {self.cached:,} cached)"

    def line(self) -> str:
        return f"{self.cached:,} cached, {self.new:,} new ({self.seconds:.1f} s)"


def namespace(backbone: Backbone, device: torch.device) -> dict[str, object]:
    """Everything but the image that a row's features depend on."""
    fields: dict[str, object] = {
        "timm_name": backbone.timm_name,
        "weights_sha256": backbone.weights_sha256,
        "preprocess": backbone.preprocess.to_dict(),
        "amp": device.type == "cuda",
    }
    if backbone.features != "pooled":  # pooled rows keep the namespaces they always had
        fields["features"] = backbone.features
    return fields


def cached_features(
    backbone: Backbone,
    splits: Splits | HasParts,
    device: torch.device,
    batch_size: int,
    workers: int,
    cache: Path | None,
    group: Group | None = None,
) -> tuple[dict[str, torch.Tensor], CacheReport]:
    """Train/val/test features; only images the cache lacks are decoded and extracted.

    `cache=None` disables the cache (every image is extracted, nothing is stored). Under
    torchrun (`group`), each rank extracts its share of the images missing from the cache
    into shards of its own; after a barrier rank 0 reads them all and returns the features
    (the other ranks return none: they are done).
    """
    started = time.perf_counter()
    everything = ImageSet.joined([splits.part(role) for role in ROLES])
    digests = everything.digests
    assert digests is not None  # folders and digits hash every image's content when scanned
    store = None if cache is None else FeatureStore.open(cache, namespace(backbone, device))
    notes: list[str] = []
    rows = {} if store is None else store.lookup(digests, notes)
    _note_old_entries(cache, notes)
    for note in notes:
        say(note)
    lacking = set(digests) - set(rows)
    if group is not None:  # rank 0's view of the cache decides the work of every rank
        lacking = set(group.broadcast(sorted(lacking) if group.leader else None))
    missing = everything.first_of_each(lacking)
    share = (
        missing if group is None else missing.subset(range(group.rank, len(missing), group.world))
    )
    _extract_into(rows, share, backbone, device, batch_size, workers, store)
    if group is not None:
        assert store is not None
        group.barrier()  # every rank's shards are written
        if not group.leader:
            return {}, CacheReport(len(set(digests)) - len(missing), len(share), 0.0)
        rows.update(store.lookup(sorted(lacking), []))  # reads only the other ranks' shards
    if store is not None:
        store.record_use(digests)
    features, start = {}, 0
    for role in ROLES:
        part = digests[start : start + len(splits.part(role))]
        features[role] = torch.stack([rows[d] for d in part]) if part else torch.empty(0)
        start += len(part)
    seconds = time.perf_counter() - started
    return features, CacheReport(len(set(digests)) - len(missing), len(missing), seconds)


def row_precision(
    cache: Path,
    backbone: Backbone,
    device: torch.device,
    features: dict[str, torch.Tensor],
    splits: Splits,
    hidden: int,
    settings: HeadTraining,
) -> RowPrecision:
    """The namespace's row precision: recorded, or measured on this run's splits, recorded,
    and (float16) the float32 shards narrowed."""
    store = FeatureStore.open(cache, namespace(backbone, device))
    choice = recorded(store.dir)
    if choice is not None:
        return choice
    labels = {role: torch.from_numpy(splits.part(role).labels) for role in ROLES}
    choice = measure(features, labels, len(splits.classes), hidden, settings)
    record(store.dir, choice)
    if choice.dtype == "float16":
        store.narrow()
    say(f"feature cache: chose {choice.line()}")
    return choice


def _extract_into(
    rows: dict[bytes, torch.Tensor],
    missing: ImageSet,
    backbone: Backbone,
    device: torch.device,
    batch_size: int,
    workers: int,
    store: FeatureStore | None,
) -> None:
    """Extract `missing` into `rows`, storing shards as they fill; the rows extracted before
    a failure (an image that does not decode) are stored before the error goes up."""
    assert missing.digests is not None
    pending: list[tuple[bytes, torch.Tensor]] = []

    def flush() -> None:
        if store is not None and pending:
            store.append([d for d, _ in pending], torch.stack([f for _, f in pending]))
        pending.clear()

    def sink(indices: list[int], features: torch.Tensor) -> None:
        for index, row in zip(indices, features, strict=True):
            digest = missing.digests[index]  # type: ignore[index]
            rows[digest] = row
            pending.append((digest, row))
        if len(pending) >= ROWS_PER_SHARD:
            flush()

    try:
        extract(
            backbone.model, missing, backbone.preprocess, device, batch_size, workers,
            f"({len(missing):,} new)", sink,
        )  # fmt: skip
    finally:
        flush()


def _note_old_entries(cache: Path | None, notes: list[str]) -> None:
    """Whole-dataset entries of earlier versions are not read: say so once, with their size."""
    if cache is None:
        return
    old = list(cache.glob("*.safetensors"))
    if old:
        size = sum(p.stat().st_size for p in old) / 1e6
        notes.append(
            f"feature cache: {len(old)} whole-dataset entries of an earlier edgetl in {cache} "
            f"are not read (rows are now kept per image); delete them to free {size:.0f} MB"
        )
