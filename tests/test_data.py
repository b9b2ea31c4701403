from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.data import Preprocess, load_dataset, stratified_split
from edgetl.errors import EdgetlError
from tests.conftest import write_folder


def test_stratified_split_is_seeded_and_keeps_class_shares() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 5, 40])
    train, val = stratified_split(labels, 0.2, seed=3)
    again_train, again_val = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [2, 4, 1, 8]
    _, other_val = stratified_split(labels, 0.2, seed=4)
    assert not np.array_equal(val, other_val)


def test_image_folder_flat_layout(photo_folder: Path) -> None:
    splits = load_dataset(str(photo_folder), val_fraction=0.2, seed=0)
    assert splits.classes == ["class_0", "class_1", "class_2"]
    assert len(splits.train) == 24 and len(splits.val) == 6
    assert np.bincount(splits.val.labels).tolist() == [2, 2, 2]
    image = splits.train.image(0)
    assert image.mode == "RGB"


def test_image_folder_train_val_layout(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", per_class=4)
    write_folder(tmp_path / "val", per_class=2, seed=1)
    splits = load_dataset(str(tmp_path))
    assert splits.val_strategy == "val/ directory"
    assert len(splits.train) == 12 and len(splits.val) == 6


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "a"
    folder.mkdir(parents=True)
    Image.new("L", (20, 20), 77).save(folder / "gray.png")
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(folder / "clear.png")
    splits = load_dataset(str(tmp_path / "d"), val_fraction=0.5)
    images = {key.split("/")[-1]: None for key in splits.train.keys + splits.val.keys}
    assert set(images) == {"gray.png", "clear.png"}
    for part in (splits.train, splits.val):
        for index in range(len(part)):
            image = part.image(index)
            assert image.mode == "RGB"
            pixel = image.getpixel((5, 5))
            # fully transparent red lies over white; gray stays gray
            assert pixel in ((255, 255, 255), (77, 77, 77))


def test_fingerprint_changes_with_contents(photo_folder: Path) -> None:
    before = load_dataset(str(photo_folder)).fingerprint
    target = next((photo_folder / "class_1").glob("*.png"))
    Image.new("RGB", (30, 30), (1, 2, 3)).save(target)
    assert load_dataset(str(photo_folder)).fingerprint != before


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "no such directory"),
        (lambda root: root.mkdir(), "no class folders"),
        (lambda root: (root / "cat").mkdir(parents=True), "has no images"),
        (lambda root: (root.parent / "file").write_text("x") or None, "no such directory"),
    ],
)
def test_bad_folders_raise_clear_errors(tmp_path: Path, setup, message: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(EdgetlError, match=message):
        load_dataset(str(root))


def test_data_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file.jpg"
    path.write_bytes(b"x")
    with pytest.raises(EdgetlError, match="is a file"):
        load_dataset(str(path))


def test_corrupt_image_is_named(photo_folder: Path) -> None:
    bad = photo_folder / "class_2" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(EdgetlError, match="broken.jpg"):
        load_dataset(str(photo_folder))


def test_train_val_class_mismatch(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", classes=3, per_class=2)
    write_folder(tmp_path / "val", classes=2, per_class=2)
    with pytest.raises(EdgetlError, match="only in train: \\['class_2'\\]"):
        load_dataset(str(tmp_path))


def test_digits_builtin() -> None:
    splits = load_dataset("digits", val_fraction=0.2, seed=0)
    assert splits.classes == [str(d) for d in range(10)]
    assert len(splits.train) + len(splits.val) == 1797
    assert splits.train.image(0).size == (10, 10)


def test_preprocess_matches_timm_eval_transform() -> None:
    """Our PIL/NumPy preprocessing feeds the same tensor as timm's own eval transform."""
    from timm.data import create_transform

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (97, 131, 3), dtype=np.uint8))
    spec = Preprocess(
        size=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), interpolation="bicubic", crop_pct=0.875
    )
    ours = spec(image)
    theirs = create_transform(
        input_size=(3, 64, 64),
        interpolation="bicubic",
        mean=spec.mean,
        std=spec.std,
        crop_pct=0.875,
    )(image).numpy()
    assert ours.shape == (3, 64, 64) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
