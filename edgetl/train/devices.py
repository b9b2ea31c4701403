"""Which torch device a stage runs on: --device auto, cpu or cuda."""

from __future__ import annotations

import torch

from edgetl.core.errors import EdgetlError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EdgetlError(
            "--device cuda: no CUDA device is visible to torch here; use --device cpu"
        )
    if name not in ("cpu", "cuda"):
        raise EdgetlError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device(name)
