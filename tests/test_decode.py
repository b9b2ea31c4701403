"""Images are decoded as a person sees them, in the one place every stage reads through:
16-bit PNGs scaled (not saturated) and EXIF orientation applied, for training, calibration,
the reference set, predict and bench alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from edgetl.core.data.dataset import folder_for_classes, load_dataset
from edgetl.core.errors import EdgetlError
from edgetl.core.images import read_image
from edgetl.core.preprocess import Preprocess

ORIENTATION = 0x0112
PRE = Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def sixteen_bit(seed: int) -> tuple[Image.Image, Image.Image]:
    """A 16-bit grayscale picture and the 8-bit one a viewer shows for it."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 65536, (40, 56)).astype(np.uint16)
    values[:, :20] //= 8  # a dark band, a bright rest
    eight = np.rint(values / 257.0).astype(np.uint8)
    return Image.fromarray(values), Image.fromarray(eight).convert("RGB")


def sideways(seed: int) -> tuple[Image.Image, Image.Image, Image.Exif]:
    """A picture stored rotated, with EXIF orientation 6 (turn 90 degrees clockwise)."""
    rng = np.random.default_rng(seed)
    upright = rng.integers(0, 256, (60, 36, 3)).astype(np.uint8)
    upright[:10] = (250, 0, 0)  # a red top edge shows which way is up
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return stored, Image.fromarray(upright), exif


def write_pair(root: Path, kind: str, classes: int = 2, per_class: int = 6) -> tuple[Path, Path]:
    """Two folders of the same pictures: as stored (16-bit or sideways) and as seen."""
    stored_root, seen_root = root / f"{kind}-stored", root / f"{kind}-seen"
    for label in range(classes):
        for folder in (stored_root, seen_root):
            (folder / f"c{label}").mkdir(parents=True)
        for index in range(per_class):
            name = f"c{label}/img{index}.png"
            if kind == "16bit":
                stored, seen = sixteen_bit(label * 100 + index)
                stored.save(stored_root / name)
            else:
                stored, seen, exif = sideways(label * 100 + index)
                stored.save(stored_root / name, exif=exif)
            seen.save(seen_root / name)
    return stored_root, seen_root


def test_a_16_bit_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    stored, seen = sixteen_bit(0)
    stored.save(tmp_path / "deep.png")
    decoded = np.asarray(read_image(tmp_path / "deep.png"))
    assert (decoded == 255).mean() < 0.01  # was 99.6% of pixels
    np.testing.assert_array_equal(decoded, np.asarray(seen))


def test_exif_orientation_is_applied_for_jpeg_and_png(tmp_path: Path) -> None:
    stored, seen, exif = sideways(1)
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    stored.save(tmp_path / "phone.png", exif=exif)
    for name in ("phone.jpg", "phone.png"):
        decoded = np.asarray(read_image(tmp_path / name)).astype(int)
        assert decoded.shape == (60, 36, 3), name
        assert decoded[:8, :, 0].mean() > 200 and decoded[:8, :, 1].mean() < 60, name
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "phone.png")), np.asarray(seen))


@pytest.mark.parametrize("kind", ["16bit", "exif"])
def test_training_calibration_reference_and_bench_read_the_same(tmp_path: Path, kind: str) -> None:
    """The dataset (training, the reference set's crops), calibration folders and bench's
    other folders all decode through read_image: stored and seen folders give one array."""
    from types import SimpleNamespace

    from edgetl.quantize.calibration import from_directory

    stored, seen = write_pair(tmp_path, kind)
    a, b = (load_dataset(str(root), 0.2, 0.2, 0) for root in (stored, seen))
    for role in ("train", "val", "test"):
        np.testing.assert_array_equal(a.part(role).arrays(PRE), b.part(role).arrays(PRE))
        np.testing.assert_array_equal(a.part(role).crops(PRE), b.part(role).crops(PRE))
    classes = ["c0", "c1"]
    x, _ = folder_for_classes(stored, classes)
    y, _ = folder_for_classes(seen, classes)
    np.testing.assert_array_equal(x.arrays(PRE), y.arrays(PRE))

    run: Any = SimpleNamespace(classes=classes, preprocess=PRE)  # what calibration reads
    np.testing.assert_array_equal(
        from_directory(stored, run, 12, 0).images, from_directory(seen, run, 12, 0).images
    )


@pytest.fixture(scope="module")
def artifact(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import export_cli

    out = tmp_path_factory.mktemp("decode") / "art"
    assert export_cli(tiny_run, out, "--target", "cpu").exit_code == 0
    return out


@pytest.mark.parametrize("kind", ["16bit", "exif"])
def test_predict_reads_the_same(artifact: Path, tmp_path: Path, kind: str) -> None:
    import edgetl

    stored, seen = write_pair(tmp_path, kind, classes=1, per_class=1)
    files = [str(root / "c0" / "img0.png") for root in (stored, seen)]
    result = CliRunner().invoke(main, ["predict", str(artifact), *files, "--json"])
    assert result.exit_code == 0, result.output
    first, second = (item["predictions"] for item in json.loads(result.output))
    assert first == second
    opened = Image.open(files[0])  # a PIL image handed to the Python API: the same rules
    assert edgetl.load(artifact).predict(opened)[0].label == first[0]["label"]


def test_a_decompression_bomb_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    Image.new("L", (12000, 16000)).save(tmp_path / "bomb.png")  # 192 Mpx > 2 x PIL's limit
    with pytest.raises(EdgetlError, match="bomb.png.*decompression bomb"):
        read_image(tmp_path / "bomb.png")
