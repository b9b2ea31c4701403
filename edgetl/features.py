"""Backbone feature extraction and the on-disk feature cache.

The backbone is frozen, so its features for a dataset never change: compute them once,
key them by everything that could change them, and reuse them for every epoch and run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from rich.console import Console

from edgetl.artifacts import atomic_write_bytes
from edgetl.backbones import Backbone
from edgetl.data import ROLES, ImageSet, Preprocess, Splits
from edgetl.ui import progress

CACHE_FORMAT = 2  # 2: train, val and test


def default_cache_dir() -> Path:
    env = os.environ.get("EDGETL_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgetl" / "features"


def extract_features(
    model: torch.nn.Module,
    images: ImageSet,
    preprocess: Preprocess,
    device: torch.device,
    batch_size: int,
    console: Console,
    label: str,
) -> torch.Tensor:
    """Run the frozen backbone over `images` once; returns float32 features on the CPU."""
    # channels_last runs the convolutions 1.6x faster on our CPUs (and suits CUDA AMP).
    model.eval().to(device).to(memory_format=torch.channels_last)
    chunks = []
    use_amp = device.type == "cuda"
    with progress(console) as bar:
        task = bar.add_task(f"features {label}", total=len(images), info="")
        for batch, _ in images.batches(preprocess, batch_size):
            with torch.inference_mode(), torch.autocast(device.type, enabled=use_amp):
                x = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
                out = model(x)
            chunks.append(out.float().cpu())
            bar.advance(task, len(batch))
    return torch.cat(chunks)


def cache_key(backbone: Backbone, splits: Splits, device: torch.device) -> str:
    fields = {
        "format": CACHE_FORMAT,
        "timm_name": backbone.timm_name,
        "weights_sha256": backbone.weights_sha256,
        "preprocess": backbone.preprocess.to_dict(),
        "data": splits.fingerprint,
        # The same hashes the run records for its splits.
        **{f"{role}_keys": splits.part(role).key_hash() for role in ROLES},
        "amp": device.type == "cuda",
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def cached_features(
    backbone: Backbone,
    splits: Splits,
    device: torch.device,
    batch_size: int,
    cache_dir: Path | None,
    console: Console,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Train/val/test features from the cache when present (True), else computed and stored (False).

    `cache_dir=None` disables the cache.
    """
    from safetensors.torch import load_file, save

    path = None
    if cache_dir is not None:
        path = cache_dir / f"{cache_key(backbone, splits, device)}.safetensors"
        if path.is_file():
            try:
                tensors = load_file(str(path))
                if all(len(tensors[role]) == len(splits.part(role)) for role in ROLES):
                    return tensors, True
            except Exception:  # a damaged cache entry is recomputed, never trusted
                pass
    tensors = {
        role: extract_features(
            backbone.model,
            splits.part(role),
            backbone.preprocess,
            device,
            batch_size,
            console,
            role,
        )
        for role in ROLES
    }
    if path is not None:
        atomic_write_bytes(path, save(tensors, metadata={"backbone": backbone.name}))
    return tensors, False
