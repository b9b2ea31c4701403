"""Detection's parts (issue 27): the letterbox and its mapping back, the pyramid's cache rows,
FCOS's assignment, the splits carved from a train-only set, the offline scenes, and mAP's
bootstrap (its accumulate equals pycocotools' on the full set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgetl.core.data.detection_splits import load_detection
from edgetl.core.data.scenes import CLASSES, make_scenes
from edgetl.core.errors import EdgetlError
from edgetl.core.letterbox import Letterbox, preprocess_from_dict
from edgetl.core.measures.detection import Objects, coco_map
from edgetl.core.measures.map_evidence import Matches, map_drop
from edgetl.core.postprocess import NmsSettings, detections
from edgetl.core.preprocess import Preprocess

LETTERBOX = Letterbox(64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear", 1.0)


def test_letterbox_keeps_the_aspect_pads_right_and_bottom_and_maps_boxes_back() -> None:
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    crop = LETTERBOX.crop(image)
    assert crop.shape == (3, 64, 64)
    assert (crop[0, :32, :] == 255).all() and (crop[:, 32:, :] == 114).all()  # padded below
    boxes = np.asarray([[10, 20, 110, 90], [0, 0, 200, 100]], np.float32)
    inside = LETTERBOX.to_input(boxes, (200, 100))
    np.testing.assert_allclose(inside, boxes * 64 / 200)
    np.testing.assert_allclose(LETTERBOX.to_original(inside, (200, 100)), boxes, atol=1e-4)


def test_the_mirrored_view_mirrors_the_boxes_with_the_pixels() -> None:
    image = Image.new("RGB", (100, 100))
    image.paste((255, 255, 255), (0, 0, 25, 100))  # a white strip on the left
    mirror = Letterbox(100, (0, 0, 0), (1, 1, 1), "nearest", 1.0, flip=True)
    assert (mirror.crop(image)[0, :, 75:] == 255).all()  # now on the right
    np.testing.assert_allclose(mirror.to_input(np.asarray([[0, 0, 25, 100.0]]), (100, 100)),
                               [[75, 0, 100, 100]])  # fmt: skip


def test_a_letterbox_round_trips_through_its_record_and_a_crop_stays_a_crop() -> None:
    assert preprocess_from_dict(LETTERBOX.to_dict()) == LETTERBOX
    crop = Preprocess(32, (0, 0, 0), (1, 1, 1))
    assert type(preprocess_from_dict(crop.to_dict())) is Preprocess
    assert "resize" not in crop.to_dict()  # classifier records (and cache namespaces) unchanged


def test_pyramid_rows_round_trip_through_one_flat_cache_row() -> None:
    from edgetl.train.detector.pyramid import PyramidShape, flatten

    shape = PyramidShape((4, 6, 8), 64)
    levels = [torch.randn(2, c, g, g) for c, g in zip(shape.channels, shape.grids(), strict=True)]
    rows = flatten(levels)
    assert rows.shape == (2, shape.row_length)
    for back, level in zip(shape.unflatten(rows), levels, strict=True):
        assert torch.equal(back, level)


def test_assignment_puts_each_object_at_its_centre_on_its_level_and_the_smaller_wins() -> None:
    from edgetl.train.detector.model import locations
    from edgetl.train.detector.pyramid import PyramidShape
    from edgetl.train.detector.targets import assign

    shape = PyramidShape((4, 4, 4), 256)
    centres, strides = locations(shape)
    boxes = torch.tensor([[100.0, 100, 140, 140], [20, 20, 236, 236], [110, 110, 130, 130]])
    labels, targets = assign(boxes, torch.tensor([0, 1, 2]), centres, strides, 3)
    positive = labels < 3
    assert positive.any() and (labels[~positive] == 3).all()
    assert set(strides[labels == 1].tolist()) == {32.0}  # the large object: the coarse level
    assert set(strides[labels == 2].tolist()) == {8.0}  # the small one: the fine level
    inner = (labels == 2).nonzero()[:, 0]
    assert torch.equal(targets[inner], boxes[2].expand(len(inner), 4))  # smaller box wins
    empty, _ = assign(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), centres, strides, 3)
    assert (empty == 3).all()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scenes(tmp_path_factory.mktemp("scenes") / "s", sizes={"train": 30})


def test_the_scenes_are_seeded_bytes_with_exact_boxes(scenes: Path, tmp_path: Path) -> None:
    again = make_scenes(tmp_path / "again", sizes={"train": 30})
    for name in ("images/train/train_0007.png", "labels/train/train_0007.txt", "data.yaml"):
        assert (scenes / name).read_bytes() == (again / name).read_bytes()
    splits = load_detection(scenes)
    assert splits.classes == CLASSES
    assert sum(len(o) for o in splits.train.objects) > 20


def test_a_train_only_set_is_carved_into_val_and_test_the_same_way_each_time(
    scenes: Path,
) -> None:
    first, second = load_detection(scenes, 0.2, 0.2, 3), load_detection(scenes, 0.2, 0.2, 3)
    assert len(first.train) + len(first.val) + len(first.test) == 30
    assert len(first.val) >= 5 and len(first.test) >= 5
    assert set(first.train.keys).isdisjoint(first.test.keys)
    assert first.fingerprint == second.fingerprint and first.val.keys == second.val.keys
    assert load_detection(scenes, 0.2, 0.2, 4).fingerprint != first.fingerprint


def test_a_changed_label_changes_the_fingerprint(scenes: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(scenes, tmp_path / "copy"))
    before = load_detection(copy).fingerprint
    label = next((copy / "labels" / "train").glob("*.txt"))
    label.write_text("0 0.5 0.5 0.3 0.3\n")
    assert load_detection(copy).fingerprint != before


def test_a_set_without_train_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("names: [a]\n")
    (tmp_path / "images" / "val").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "val" / "x.png")
    with pytest.raises(EdgetlError, match="no train split"):
        load_detection(tmp_path)


def _random_case(seed: int, images: int = 60) -> tuple[list[Objects], list[Objects], list]:
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for _ in range(images):
        n = int(rng.integers(0, 4))
        corner = rng.uniform(0, 150, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(20, 80, (n, 2))], 1)
        truth.append(Objects(boxes.astype(np.float32), rng.integers(0, 3, n)))
        extra = rng.uniform(0, 150, (5, 2))
        guess = np.concatenate([boxes + rng.normal(0, 4, boxes.shape),
                                np.concatenate([extra, extra + 30], 1)])  # fmt: skip
        classes = np.concatenate([truth[-1].classes, rng.integers(0, 3, 5)])
        found.append(Objects(guess.astype(np.float32), classes, rng.uniform(0, 1, n + 5)))
    return truth, found, [(240, 240)] * images


def test_the_bootstrap_accumulates_exactly_as_pycocotools_on_the_full_set() -> None:
    truth, found, sizes = _random_case(0)
    assert coco_map(truth, found, sizes, 3).map50_95 == pytest.approx(
        Matches.of(truth, found, sizes, 3).map50_95(np.arange(len(truth))), abs=1e-12
    )


def test_the_same_detections_drop_nothing_and_worse_ones_are_bounded_above_their_drop() -> None:
    truth, found, sizes = _random_case(1)
    same = map_drop(truth, found, found, sizes, 3, 0.9)
    assert same.drop_pts == 0 and same.upper_pts == 0
    rng = np.random.default_rng(2)
    worse = [Objects(o.boxes + rng.normal(0, 6, o.boxes.shape).astype(np.float32), o.classes,
                     o.scores) for o in found]  # fmt: skip
    drop = map_drop(truth, found, worse, sizes, 3, 0.9)
    assert drop.drop_pts > 0 and drop.upper_pts > drop.drop_pts


def test_outputs_become_detections_in_the_original_pixels_once_per_object() -> None:
    boxes = np.asarray([[10, 10, 30, 30], [11, 11, 31, 31], [40, 5, 60, 25]], np.float32)
    scores = np.asarray([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]], np.float32)
    found = detections(boxes, scores, NmsSettings(), LETTERBOX, (128, 64))
    assert found.classes.tolist() == [0, 1]  # the overlapping second box suppressed
    np.testing.assert_allclose(found.boxes[0], [20, 20, 60, 60])  # scale 0.5 undone


def test_a_box_in_the_letterbox_padding_is_dropped_not_clipped_to_a_line() -> None:
    boxes = np.asarray([[10, 10, 30, 30], [10, 40, 30, 60]], np.float32)  # 2nd: below the photo
    scores = np.asarray([[0.9], [0.8]], np.float32)
    found = detections(boxes, scores, NmsSettings(), LETTERBOX, (128, 64))  # photo: 64 x 32 in
    assert found.classes.tolist() == [0] and found.boxes.shape == (1, 4)


def test_the_detector_reference_set_round_trips_and_names_a_damaged_file(tmp_path: Path) -> None:
    from edgetl.core.artifact.detection_reference import DetectionReference

    rng = np.random.default_rng(0)
    truth = [Objects(np.asarray([[1, 2, 30, 40]], np.float32), np.asarray([1])),
             Objects.none()]  # fmt: skip
    scored = [Objects(np.asarray([[1, 2, 31, 40], [5, 5, 9, 9]], np.float32),
                      np.asarray([1, 0]), np.asarray([0.9, 0.2], np.float32)),
              Objects.none(scored=True)]  # fmt: skip
    images = rng.integers(0, 255, (2, 3, 16, 16), dtype=np.uint8)
    sizes, keys = [(64, 48), (20, 30)], ["a.png", "b.png"]
    reference = DetectionReference(images, sizes, keys, ["cat", "dog"], truth, scored, scored)
    path = tmp_path / "reference.npz"
    reference.save(path)
    back = DetectionReference.load(path)
    assert back.sizes == [(64, 48), (20, 30)] and back.keys == ["a.png", "b.png"]
    np.testing.assert_array_equal(back.images, images)
    assert back.truth[0].scores is None and len(back.truth[1]) == 0
    np.testing.assert_array_equal(back.artifact[0].boxes, scored[0].boxes)
    np.testing.assert_array_equal(back.fp32[0].scores, scored[0].scores)
    assert len(back.fp32[1]) == 0 and back.fp32[1].scores is not None
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["fp32_image"] = arrays["fp32_image"] + 5  # detections of an image that is not there
    np.savez(path, **arrays)
    with pytest.raises(EdgetlError, match=r"reference.npz: fp32's boxes.*re-run export"):
        DetectionReference.load(path)
    path.write_bytes(b"not an npz")
    with pytest.raises(EdgetlError, match="not a readable detector reference set"):
        DetectionReference.load(path)
