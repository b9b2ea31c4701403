"""The per-image feature cache: one row per image content, shared by every run and dataset.

A frozen backbone's features of an image depend on the backbone and its weights, the
preprocessing, AMP or not, and the image's bytes: nothing else. So rows are keyed by the
sha256 of the image's content inside a namespace of the rest. A run then extracts only the
images no run extracted before (adding ten photos to 100k extracts ten), renaming or moving
files costs nothing, and the same photo in two datasets is extracted once.

Layout: CACHE/v1/<namespace>/namespace.json, precision.json and shards/*.safetensors. A shard
is written once, atomically (temporary name, then rename), and never changed: it holds
`digests` (N x 32 uint8), `features` (N x D, float16 or float32: row_precision.py) and, in
its metadata, a sha256 over both. Readers list the shards there are, so another process may
append while one reads; a shard whose checksum fails is set aside and its rows extracted
again. There is no shared index file to corrupt or lock: each shard's digests are its index.
`used/` records which rows each run read, for `edgetl cache prune`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgetl.core.files import atomic_write_bytes, atomic_write_text
from edgetl.train.row_precision import recorded

STORE_VERSION = "v1"
DIGEST_BYTES = 32


@dataclass(frozen=True)
class Shard:
    path: Path
    digests: np.ndarray  # (N, 32) uint8
    features: torch.Tensor  # (N, D) float16 or float32, as stored


def namespace_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def shard_sha256(digests: np.ndarray, features: torch.Tensor) -> str:
    hasher = hashlib.sha256(np.ascontiguousarray(digests).tobytes())
    hasher.update(features.contiguous().numpy().tobytes())
    return hasher.hexdigest()


class FeatureStore:
    """The rows of one namespace (backbone, weights, preprocessing, AMP)."""

    def __init__(self, folder: Path, fields: dict[str, Any]):
        self.dir = folder
        self.fields = fields
        # Shards this store has read or written: each is read once however often lookup()
        # is called (rank 0 looks again after the other ranks' shards are written).
        self.seen: set[Path] = set()

    @classmethod
    def open(cls, root: Path, fields: dict[str, Any]) -> FeatureStore:
        """The namespace of `fields` in the cache at `root` (created on first append)."""
        return cls(root / STORE_VERSION / namespace_key(fields), fields)

    @property
    def shard_dir(self) -> Path:
        return self.dir / "shards"

    def shards(self, notes: list[str]) -> list[Shard]:
        """Every complete, intact shard not seen yet; a damaged one is set aside (its rows
        recomputed)."""
        found = []
        for path in sorted(self.shard_dir.glob("*.safetensors")):
            if path in self.seen:
                continue
            self.seen.add(path)
            shard = _read_shard(path)
            if shard is None:
                if not path.exists():
                    continue  # removed by `edgetl cache prune` since it was listed
                path.replace(path.with_suffix(".damaged"))
                notes.append(f"feature cache shard {path.name} is damaged: set aside, its rows "
                             "are extracted again")  # fmt: skip
                continue
            found.append(shard)
        return found

    def lookup(self, digests: list[bytes], notes: list[str]) -> dict[bytes, torch.Tensor]:
        """The cached row of each digest present (one tensor per digest)."""
        wanted = set(digests)
        rows: dict[bytes, torch.Tensor] = {}
        for shard in self.shards(notes):
            for index, digest in enumerate(shard.digests):
                key = digest.tobytes()
                if key in wanted and key not in rows:
                    rows[key] = shard.features[index].float()
        return rows

    def append(
        self, digests: list[bytes], features: torch.Tensor, dtype: torch.dtype | None = None
    ) -> Path:
        """A new shard with these rows, written atomically; returns its path. Rows are stored
        in `dtype`, by default the namespace's recorded precision (float32 until chosen)."""
        from safetensors.torch import save

        self.shard_dir.mkdir(parents=True, exist_ok=True)
        marker = self.dir / "namespace.json"
        if not marker.is_file():
            atomic_write_text(marker, json.dumps(self.fields, indent=2, sort_keys=True) + "\n")
        table = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        features = features.to(dtype or self.row_dtype()).contiguous()
        metadata = {"sha256": shard_sha256(table, features), "rows": str(len(digests))}
        name = f"{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}.safetensors"
        path = self.shard_dir / name
        data = save({"digests": torch.from_numpy(table.copy()), "features": features}, metadata)
        atomic_write_bytes(path, data)
        self.seen.add(path)  # its rows are in memory already
        return path

    def row_dtype(self) -> torch.dtype:
        choice = recorded(self.dir)
        return torch.float16 if choice is not None and choice.dtype == "float16" else torch.float32

    def narrow(self) -> int:
        """Rewrite the float32 shards as float16 (after float16 was chosen); returns how many
        rows were rewritten. Each new shard is written before its old one goes."""
        rewritten = 0
        for path in sorted(self.shard_dir.glob("*.safetensors")):
            shard = _read_shard(path)
            if shard is None or shard.features.dtype == torch.float16:
                continue
            self.append([d.tobytes() for d in shard.digests], shard.features, torch.float16)
            path.unlink(missing_ok=True)
            rewritten += len(shard.digests)
        return rewritten

    def record_use(self, digests: list[bytes]) -> None:
        """Which rows this run read: `edgetl cache prune` keeps rows a recent run used."""
        used = self.dir / "used"
        used.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{os.getpid()}.digests"
        atomic_write_bytes(used / name, b"".join(sorted(set(digests))))


def _read_shard(path: Path) -> Shard | None:
    """A shard, or None when it cannot be read or its checksum differs."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            recorded = (handle.metadata() or {}).get("sha256")
            digests = handle.get_tensor("digests").numpy()
            features = handle.get_tensor("features")
    except Exception:  # noqa: BLE001 - an unreadable shard is recomputed, never trusted
        return None
    if digests.ndim != 2 or digests.shape[1] != DIGEST_BYTES or len(digests) != len(features):
        return None
    if recorded != shard_sha256(digests, features):
        return None
    return Shard(path, digests, features)


@dataclass(frozen=True)
class NamespaceInfo:
    key: str
    fields: dict[str, Any]
    shards: int
    rows: int
    bytes: int
    damaged: int
    last_used: float | None  # when a run last read rows (seconds since the epoch)
    precision: str | None  # float16 / float32 once chosen (row_precision.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "backbone": self.fields.get("timm_name"),
            "size": (self.fields.get("preprocess") or {}).get("size"),
            "amp": self.fields.get("amp"),
            "shards": self.shards,
            "rows": self.rows,
            "mb": round(self.bytes / 1e6, 2),
            "damaged": self.damaged,
            "last_used": self.last_used,
            "precision": self.precision,
        }


def namespaces(root: Path) -> list[NamespaceInfo]:
    """What the cache at `root` holds, per namespace (`edgetl cache info`)."""
    found = []
    for folder in sorted((root / STORE_VERSION).glob("*/")):
        marker = folder / "namespace.json"
        fields = json.loads(marker.read_text()) if marker.is_file() else {}
        shards = sorted((folder / "shards").glob("*.safetensors"))
        used = [p.stat().st_mtime for p in (folder / "used").glob("*.digests")]
        found.append(
            NamespaceInfo(
                key=folder.name,
                fields=fields,
                shards=len(shards),
                rows=sum(_rows(path) for path in shards),
                bytes=sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
                damaged=len(list((folder / "shards").glob("*.damaged"))),
                last_used=max(used) if used else None,
                precision=choice.dtype if (choice := recorded(folder)) else None,
            )
        )
    return found


def _rows(path: Path) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return int((handle.metadata() or {}).get("rows", 0))
    except Exception:  # noqa: BLE001 - counted as damaged when read
        return 0


@dataclass(frozen=True)
class PruneReport:
    rows_kept: int
    rows_removed: int
    bytes_freed: int


def prune(root: Path, unused_days: float, dry_run: bool = False) -> PruneReport:
    """Remove the rows no run read in the last `unused_days` days (shards rewritten with the
    rows kept), set-aside damaged shards, usage records older than that, and namespaces left
    empty, and the whole-dataset entries of earlier versions (never read now). Run it while
    no finetune writes to this cache."""
    cutoff = time.time() - unused_days * 86400
    kept = removed = freed = 0
    old = list(root.glob("*.safetensors"))  # whole-dataset entries earlier versions wrote
    freed += sum(p.stat().st_size for p in old)
    if not dry_run:
        for path in old:
            path.unlink()
    for folder in sorted((root / STORE_VERSION).glob("*/")):
        recent = _recently_used(folder / "used", cutoff)
        store = FeatureStore(folder, {})  # namespace.json is there already
        for shard in store.shards([]):
            keep = [i for i, d in enumerate(shard.digests) if d.tobytes() in recent]
            kept, removed = kept + len(keep), removed + len(shard.digests) - len(keep)
            if len(keep) == len(shard.digests):
                continue
            freed += shard.path.stat().st_size
            if dry_run:
                continue
            if keep:
                digests = [shard.digests[i].tobytes() for i in keep]
                store.append(digests, shard.features[keep], shard.features.dtype)
            shard.path.unlink()
        stale = list((folder / "shards").glob("*.damaged"))
        stale += [p for p in (folder / "used").glob("*.digests") if p.stat().st_mtime < cutoff]
        freed += sum(p.stat().st_size for p in stale)
        if not dry_run:
            for path in stale:
                path.unlink()
            if not list((folder / "shards").glob("*.safetensors")):
                shutil.rmtree(folder)
    return PruneReport(kept, removed, freed)


def _recently_used(used: Path, cutoff: float) -> set[bytes]:
    recent: set[bytes] = set()
    for record in used.glob("*.digests"):
        if record.stat().st_mtime >= cutoff:
            data = record.read_bytes()
            recent.update(data[i : i + DIGEST_BYTES] for i in range(0, len(data), DIGEST_BYTES))
    return recent
