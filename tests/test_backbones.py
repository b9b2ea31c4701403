from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from edgetl.core.errors import EdgetlError
from edgetl.train import backbones
from edgetl.train.backbones import load_backbone, read_state_dict, resolve_timm_name, trainable_tail
from tests.conftest import TINY_BACKBONE


@pytest.fixture(scope="module")
def lite0() -> backbones.Backbone:
    return load_backbone("efficientnet_lite0")


def imagenet_top1(backbone: backbones.Backbone, image: Image.Image) -> str:
    """Classify with the ImageNet classifier restored on top of the offline weights."""
    import timm
    from timm.data import ImageNetInfo

    full = timm.create_model(backbone.timm_name, pretrained=False)
    state = backbones._map_in_order(full, read_state_dict(backbones._lite0_weights()))
    full.load_state_dict(state)
    full.eval()
    x = torch.from_numpy(backbone.preprocess(image))[None]
    with torch.inference_mode():
        index = int(full(x).argmax())
    return ImageNetInfo().index_to_description(index)


def test_offline_lite0_weights_classify_real_photos(lite0: backbones.Backbone) -> None:
    from skimage import data

    assert lite0.weights_source.startswith("package:")
    assert len(lite0.weights_sha256) == 64
    assert "cat" in imagenet_top1(lite0, Image.fromarray(data.chelsea()))
    assert imagenet_top1(lite0, Image.fromarray(data.coffee())) == "espresso"


def test_preprocess_comes_from_pretrained_config(lite0: backbones.Backbone) -> None:
    pre = lite0.preprocess
    assert (pre.size, pre.interpolation, pre.crop_pct) == (224, "bicubic", 0.875)
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert lite0.num_features == 1280
    assert load_backbone("efficientnet_lite0", image_size=128).preprocess.size == 128


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(EdgetlError, match="Did you mean: .*efficientnet_lite0"):
        resolve_timm_name("efficientnet_lite")


def test_unreachable_hub_says_so_and_suggests_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(backbones, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(EdgetlError, match="cannot reach.*--weights FILE"):
        load_backbone("resnet18")


def test_local_weights_file_safetensors_and_pth(tiny_weights: Path, tmp_path: Path) -> None:
    from_safetensors = load_backbone(TINY_BACKBONE, weights=tiny_weights)
    pth = tmp_path / "tiny.pth"
    torch.save({"state_dict": read_state_dict(tiny_weights)}, pth)
    from_pth = load_backbone(TINY_BACKBONE, weights=pth)
    for (name, a), (_, b) in zip(
        from_safetensors.model.state_dict().items(),
        from_pth.model.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    assert from_pth.weights_source == f"file:{pth}"


class NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weight": NotATensor()}, handle)
    with pytest.raises(EdgetlError, match="cannot load weights safely"):
        read_state_dict(path)


def test_weights_for_another_model_are_refused(tiny_weights: Path) -> None:
    with pytest.raises(EdgetlError, match="is it for this --backbone"):
        load_backbone("test_resnet", weights=tiny_weights)


def test_unfreeze_takes_last_stages(tiny_weights: Path) -> None:
    model = load_backbone(TINY_BACKBONE, weights=tiny_weights).model
    tail = trainable_tail(model, 1)
    assert 0 < len(tail) < len(list(model.parameters()))
    with pytest.raises(EdgetlError, match="--unfreeze 99"):
        trainable_tail(model, 99)
