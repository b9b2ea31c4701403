from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.core.data.dataset import load_dataset
from edgetl.core.data.splitting import stratified_split
from edgetl.core.errors import EdgetlError
from edgetl.core.preprocess import Preprocess
from tests.conftest import write_folder


def test_stratified_split_is_seeded_and_keeps_class_shares() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 5, 40])
    train, val, test = stratified_split(labels, (0.2, 0.2), seed=3)
    again = stratified_split(labels, (0.2, 0.2), seed=3)
    assert all(np.array_equal(x, y) for x, y in zip((train, val, test), again, strict=True))
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert len(train) + len(val) + len(test) == len(labels)
    assert np.bincount(labels[val]).tolist() == [2, 4, 1, 8]
    assert np.bincount(labels[test]).tolist() == [2, 4, 1, 8]
    _, other_val, _ = stratified_split(labels, (0.2, 0.2), seed=4)
    assert not np.array_equal(val, other_val)


def test_three_images_per_class_give_one_of_each_role() -> None:
    train, val, test = stratified_split(np.zeros(3, dtype=np.int64), (0.1, 0.1), seed=0)
    assert (len(train), len(val), len(test)) == (1, 1, 1)


def test_image_folder_flat_layout_is_split_three_ways(photo_folder: Path) -> None:
    splits = load_dataset(str(photo_folder), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert splits.classes == ["class_0", "class_1", "class_2"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert np.bincount(splits.val.labels).tolist() == [2, 2, 2]
    assert np.bincount(splits.test.labels).tolist() == [2, 2, 2]
    assert not set(splits.test.keys) & (set(splits.train.keys) | set(splits.val.keys))
    assert splits.train.image(0).mode == "RGB"


def test_train_and_val_folders_report_val_and_carve_selection_from_train(tmp_path: Path) -> None:
    """The user's val/ is the reported set: nothing may be chosen on it."""
    write_folder(tmp_path / "train", per_class=10)
    write_folder(tmp_path / "val", per_class=2, seed=1)
    splits = load_dataset(str(tmp_path), val_fraction=0.2)
    assert all(key.startswith("val/") for key in splits.test.keys) and len(splits.test) == 6
    assert all(key.startswith("train/") for key in splits.val.keys) and len(splits.val) == 6
    assert len(splits.train) == 24
    assert "val/ (used as the test set: reported only)" in splits.strategy


def test_train_val_test_folders_are_used_as_given(tmp_path: Path) -> None:
    for role, count in (("train", 4), ("val", 2), ("test", 3)):
        write_folder(tmp_path / role, per_class=count, seed=count)
    splits = load_dataset(str(tmp_path))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 6, 9)
    assert all(key.startswith("test/") for key in splits.test.keys)


def test_train_and_test_folders_carve_val_from_train(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", per_class=5)
    write_folder(tmp_path / "test", per_class=2, seed=1)
    splits = load_dataset(str(tmp_path), val_fraction=0.2)
    assert len(splits.test) == 6 and all(k.startswith("train/") for k in splits.val.keys)


@pytest.mark.parametrize(
    ("val", "test", "option"),
    [(1.0, 0.2, "--val-fraction 1.0"), (0.2, 0.0, "--test-fraction 0.0"), (0.6, 0.4, "sum")],
)
def test_bad_fractions_are_named(photo_folder: Path, val: float, test: float, option: str) -> None:
    with pytest.raises(EdgetlError, match=option):
        load_dataset(str(photo_folder), val_fraction=val, test_fraction=test)


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "a"
    folder.mkdir(parents=True)
    Image.new("L", (20, 20), 77).save(folder / "gray.png")
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(folder / "clear.png")
    Image.new("L", (20, 20), 77).save(folder / "gray2.png")
    write_folder(tmp_path / "d", classes=1, per_class=3)  # a second class
    splits = load_dataset(str(tmp_path / "d"))
    keys = splits.train.keys + splits.val.keys + splits.test.keys
    assert {"gray.png", "clear.png"} <= {key.split("/")[-1] for key in keys}
    for part in (splits.train, splits.val, splits.test):
        for index in range(len(part)):
            if not part.keys[index].startswith("a/"):
                continue
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
        (
            lambda root: [(root / name).mkdir(parents=True) for name in ("cat", "dog")],
            "cat: class folder has no images",
        ),
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


def test_scanning_checks_headers_and_leaves_the_decode_to_extraction(photo_folder: Path) -> None:
    """A truncated JPEG has a valid header: the scan (bytes and headers only) passes it, and
    its one full decode, in feature extraction, names it (tests/test_finetune.py)."""
    good = next((photo_folder / "class_0").glob("*.jpg"))
    data = good.read_bytes()
    (photo_folder / "class_0" / "cut.jpg").write_bytes(data[: len(data) // 2])
    splits = load_dataset(str(photo_folder))
    cut = next(s for s in (splits.train, splits.val, splits.test) if "class_0/cut.jpg" in s.keys)
    with pytest.raises(EdgetlError, match="cut.jpg: cannot decode this image"):
        cut.image(cut.keys.index("class_0/cut.jpg"))


def test_text_file_named_jpg_is_named_not_a_buffer(photo_folder: Path) -> None:
    (photo_folder / "class_1" / "notes.jpg").write_text("hello")
    with pytest.raises(EdgetlError) as info:
        load_dataset(str(photo_folder))
    assert "notes.jpg: not an image file" in str(info.value)
    assert "BytesIO" not in str(info.value)


def test_a_single_class_is_refused(tmp_path: Path) -> None:
    write_folder(tmp_path / "one", classes=1, per_class=6)
    with pytest.raises(EdgetlError, match="only one class folder"):
        load_dataset(str(tmp_path / "one"))


def test_class_with_too_few_images_to_split_three_ways(tmp_path: Path) -> None:
    write_folder(tmp_path / "d", classes=2, per_class=6)
    for extra in list((tmp_path / "d" / "class_1").iterdir())[2:]:
        extra.unlink()
    with pytest.raises(EdgetlError, match=r"\['class_1'\] have fewer than 3 images"):
        load_dataset(str(tmp_path / "d"))


def test_train_val_class_mismatch(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", classes=3, per_class=2)
    write_folder(tmp_path / "val", classes=2, per_class=2)
    with pytest.raises(EdgetlError, match="only in train: \\['class_2'\\]"):
        load_dataset(str(tmp_path))


def test_digits_builtin() -> None:
    splits = load_dataset("digits", val_fraction=0.2, test_fraction=0.2, seed=0)
    assert splits.classes == [str(d) for d in range(10)]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert len(splits.test) == pytest.approx(0.2 * 1797, abs=10)
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
    crop = spec.crop(image)
    assert crop.dtype == np.uint8
    np.testing.assert_array_equal(spec.normalize(crop), ours)  # the reference set's path
    theirs = create_transform(
        input_size=(3, 64, 64),
        interpolation="bicubic",
        mean=spec.mean,
        std=spec.std,
        crop_pct=0.875,
    )(image).numpy()
    assert ours.shape == (3, 64, 64) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
