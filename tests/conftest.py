"""Shared fixtures: a tiny timm backbone with local weights, and small real image folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

TINY_BACKBONE = "test_efficientnet"
# The INT8 budget of exports of tiny runs: 12 val images certify 22 points at best, and a
# candidate with 2 of them worse is shown within 44 (core/measures/evidence.py).
TINY_BUDGET = ("--max-accuracy-drop", "50")


def load_manifest(artifact: Path) -> dict[str, Any]:
    """The artifact's manifest (every checksum verified by the typed reader), as a dict."""
    from edgetl.core.records import Manifest

    return Manifest.read(artifact).to_dict()


def export_cli(run: Path, out: Path, *args: str) -> Result:
    """`edgetl export RUN --out OUT ARGS...` through click's test runner."""
    from edgetl.cli import main

    return CliRunner().invoke(main, ["export", str(run), "--out", str(out), *args])


def assert_test_drop_within_noise(manifest: dict[str, Any]) -> None:
    """The guard promised, at its confidence, that the kept model's drop is at most its bound
    on val; test (no choice made on it) is a new sample of the same drop: its interval at the
    same confidence must reach down to that bound. A model kept on a lucky val (the old
    point-estimate rule: +3.06 on test, bound 2.89) fails this."""
    from edgetl.core.measures.evidence import PairedDrop

    test = manifest["accuracy"]["test"]  # FP32 and INT8 on test, measured once
    quant = manifest["quantization"]
    bound, confidence = quant["drop_upper_pts"], quant["confidence"]
    assert bound <= quant["budget_pts"] + 1e-6, quant  # kept only within the budget
    low, _ = PairedDrop(test["n"], test["worse"], test["better"]).interval_pts(confidence)
    assert low <= bound, (test, bound)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the feature and OpenVINO model caches of tests away from the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGETL_CACHE_DIR", str(tmp_path_factory.mktemp("feature-cache")))
    mp.setenv("EDGETL_OPENVINO_CACHE", str(tmp_path_factory.mktemp("openvino-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, randomly initialised timm test model saved as safetensors (no network)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(TINY_BACKBONE, pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def make_image(rng: np.random.Generator, label: int, size: tuple[int, int]) -> Image.Image:
    """A noisy picture whose dominant colour and stripe direction depend on the class."""
    width, height = size
    pixels = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
    pixels[..., label % 3] += 150
    if label // 3 % 2:
        pixels[::4, :, :] = 255
    else:
        pixels[:, ::4, :] = 255
    return Image.fromarray(pixels)


def write_folder(root: Path, classes: int = 3, per_class: int = 10, seed: int = 0) -> Path:
    """DIR/<class>/*.{png,jpg} with mixed sizes and modes (RGB, grayscale, RGBA)."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            image = make_image(rng, label, size)
            if index % 4 == 1:  # RGBA only for PNG files
                image = image.convert("RGBA")
            if index % 2:
                image.save(folder / f"img_{index}.png")
            else:
                image.save(folder / f"img_{index}.jpg", quality=90)
    return root


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "photos")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """A finished fine-tuning run on a small folder with the tiny backbone."""
    base = tmp_path_factory.mktemp("tiny-run")
    out = base / "run"
    finetune_tiny(write_folder(base / "photos", per_class=20), out, tiny_weights, epochs=30)
    return out


def finetune_tiny(data: Path, out: Path, weights: Path, **options: Any) -> Path:
    """A run of the tiny backbone at 64 px on `data` (options override FinetuneOptions)."""
    from edgetl.stages.finetune import FinetuneOptions, finetune

    settings = {"image_size": 64, **options}
    finetune(
        FinetuneOptions(
            data=str(data), out=out, backbone=TINY_BACKBONE, weights=weights, **settings
        )
    )
    return out
