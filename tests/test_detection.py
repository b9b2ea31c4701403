"""Detection, first slice (issue 27): the YOLO and COCO readers on good and broken labels, and
COCO mAP (pycocotools) and the detector's agreement on cases computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.core.data.detection import layout, read_detection
from edgetl.core.errors import EdgetlError
from edgetl.core.measures.detection import Objects, agreement, coco_map

WIDTH, HEIGHT = 64, 48


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 150)).save(path)


def yolo(root: Path, labels: dict[str, str], names: str = "names: [cat, dog]") -> Path:
    """A YOLO folder: one train image per entry of `labels` (None: no label file)."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(names + "\n")
    for stem, text in labels.items():
        image(root / "images" / "train" / f"{stem}.png")
        if text is not None:
            label = root / "labels" / "train" / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    return root


def test_yolo_boxes_come_out_in_pixels_and_unlabelled_images_are_negatives(
    tmp_path: Path,
) -> None:
    root = yolo(tmp_path / "y", {"a": "1 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.5 0.5\n", "b": "",
                                 "c": None})  # fmt: skip
    assert layout(root) == "yolo"
    (train,) = read_detection(root).values()
    assert train.classes == ["cat", "dog"] and len(train) == 3 and train.negatives == 2
    first = train.objects[train.keys.index("images/train/a.png")]
    assert first.classes.tolist() == [1, 0]
    np.testing.assert_allclose(first.boxes, [[16, 12, 48, 36], [0, 0, 32, 24]])
    assert train.sizes[0] == (WIDTH, HEIGHT)


def test_yolo_names_may_be_numbered(tmp_path: Path) -> None:
    root = yolo(tmp_path / "y", {"a": "1 0.5 0.5 0.2 0.2\n"}, "names:\n  0: cat\n  1: dog")
    assert read_detection(root)["train"].classes == ["cat", "dog"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2 0.5 0.5 0.2 0.2\n", "a.txt:1: class 2 is not one of data.yaml's 0..1"),
        ("0 0.5 0.5 0.2\n", "a.txt:1: expected `class cx cy w h`"),
        ("0 0.5 0.5 0.2 0.2\n0 0.9 0.5 0.4 0.2\n", "a.txt:2: the box"),  # past the right edge
        ("0 0.5 nan 0.2 0.2\n", "a.txt:1: the box is not finite"),
        ("0 0.5 0.5 0 0.2\n", "a.txt:1: the box has no area"),
        ("cat 0.5 0.5 0.2 0.2\n", "a.txt:1: not numbers"),
    ],
)
def test_a_bad_yolo_label_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    root = yolo(tmp_path / "y", {"a": text})
    with pytest.raises(EdgetlError, match=message.replace("(", r"\(").replace("`", ".")):
        read_detection(root)


def coco(root: Path, annotations: list[dict], folder: str = "images/val") -> Path:
    image(root / folder / "one.png")
    data = {
        "images": [{"id": 7, "file_name": "one.png", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}],
        "annotations": annotations,
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return root


def test_coco_categories_map_to_classes_by_id_and_boxes_to_corners(tmp_path: Path) -> None:
    root = coco(tmp_path / "c", [{"id": 1, "image_id": 7, "category_id": 3,
                                  "bbox": [10, 5, 20, 10]}], folder="val")  # fmt: skip
    assert layout(root) == "coco"
    val = read_detection(root)["val"]
    assert val.classes == ["cat", "dog"] and val.keys == ["val/one.png"]
    assert val.objects[0].classes.tolist() == [1]
    np.testing.assert_allclose(val.objects[0].boxes, [[10, 5, 30, 15]])


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"category_id": 9, "bbox": [1, 1, 5, 5]}, "annotation 4: category 9 unknown"),
        ({"category_id": 1, "bbox": [50, 1, 30, 5]}, "annotation 4: the box .* lies outside"),
        ({"category_id": 1, "bbox": [1, 1, 0, 5]}, "annotation 4: the box has no area"),
    ],
)
def test_a_bad_coco_annotation_names_it(tmp_path: Path, annotation: dict, message: str) -> None:
    root = coco(tmp_path / "c", [{"id": 4, "image_id": 7, **annotation}])
    with pytest.raises(EdgetlError, match=message):
        read_detection(root)


def test_a_folder_of_neither_layout_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(EdgetlError, match="not a detection dataset; give a YOLO folder"):
        read_detection(tmp_path)


# -- the metric, on cases computed by hand ----------------------------------------------------
SIZE = [(200, 200)]
TRUTH = Objects(np.array([[0, 0, 100, 100]], np.float32), np.array([0]))


def found(boxes: list[list[float]], scores: list[float], classes: list[int] | None = None):
    labels = classes if classes is not None else [0] * len(boxes)
    return Objects(np.asarray(boxes, np.float32), np.asarray(labels), np.asarray(scores))


def test_a_perfect_detector_scores_one() -> None:
    scores = coco_map([TRUTH], [found([[0, 0, 100, 100]], [0.9])], SIZE, 1)
    assert scores.map50_95 == pytest.approx(1.0) and scores.map50 == pytest.approx(1.0)
    assert scores.per_class == [pytest.approx(1.0)]


def test_a_shifted_box_counts_only_at_the_thresholds_its_iou_clears() -> None:
    """Shifted 10 px: IoU 90/110 = 0.818, a hit at 0.50..0.80 (7 of 10 thresholds)."""
    scores = coco_map([TRUTH], [found([[10, 0, 110, 100]], [0.9])], SIZE, 1)
    assert scores.map50 == pytest.approx(1.0) and scores.map50_95 == pytest.approx(0.7)


def test_a_missed_object_halves_recall() -> None:
    """Two objects, one found: precision 1 up to recall 0.5, then nothing: 51 of COCO's 101
    recall points."""
    truth = Objects(np.array([[0, 0, 100, 100], [100, 100, 200, 200]], np.float32),
                    np.array([0, 0]))  # fmt: skip
    scores = coco_map([truth], [found([[0, 0, 100, 100]], [0.9])], SIZE, 1)
    assert scores.map50_95 == pytest.approx(51 / 101)


def test_a_false_positive_costs_only_when_it_outranks_the_hit() -> None:
    """Ranked below the hit it costs nothing; above it, precision is 1/2 at every recall."""
    below = coco_map([TRUTH], [found([[0, 0, 100, 100], [120, 120, 180, 180]], [0.9, 0.5])],
                     SIZE, 1)  # fmt: skip
    above = coco_map([TRUTH], [found([[0, 0, 100, 100], [120, 120, 180, 180]], [0.5, 0.9])],
                     SIZE, 1)  # fmt: skip
    assert below.map50_95 == pytest.approx(1.0) and above.map50_95 == pytest.approx(0.5)


def test_no_detections_score_zero_and_a_class_without_objects_has_no_ap() -> None:
    empty = Objects.none(scored=True)
    assert coco_map([TRUTH], [empty], SIZE, 2).map50_95 == 0.0
    assert coco_map([TRUTH], [found([[0, 0, 100, 100]], [0.9])], SIZE, 2).per_class[1] is None


def test_agreement_counts_the_reference_detections_reproduced() -> None:
    reference = [found([[0, 0, 100, 100], [120, 120, 180, 180]], [0.9, 0.8], [0, 1])]
    same = [found([[2, 0, 102, 100], [120, 120, 180, 180]], [0.7, 0.6], [0, 1])]
    wrong_class = [found([[0, 0, 100, 100], [120, 120, 180, 180]], [0.9, 0.8], [0, 0])]
    assert agreement(reference, same) == 1.0
    assert agreement(reference, wrong_class) == 0.5
    assert agreement(reference, [Objects.none(scored=True)]) == 0.0
    assert agreement([Objects.none(scored=True)], same) is None


def test_answers_compare_image_by_image_on_confident_detections_only() -> None:
    """Two reports' answers (score >= 0.5) match image by image one to one: a box moved past
    IoU 0.5, a class changed, an extra confident box or a missing one makes an image differ;
    what scores below 0.5 never does. Rows survive the report's JSON."""
    from edgetl.core.measures.answers import (
        answer_rows,
        as_objects,
        confident_agreement,
        same_answers,
    )

    base = [found([[0, 0, 100, 100], [120, 120, 180, 180]], [0.9, 0.8], [0, 1]),
            found([[10, 10, 50, 50]], [0.6]), Objects.none(scored=True),
            found([[0, 0, 40, 40]], [0.2])]  # fmt: skip
    rows = json.loads(json.dumps(answer_rows(base)))
    assert [len(r) for r in rows] == [2, 1, 0, 0] and rows[0][0] == [0, 0, 100, 100, 0, 0.9]
    same = [found([[2, 0, 102, 100], [120, 120, 180, 180]], [0.7, 0.95], [0, 1]),
            found([[11, 10, 51, 50], [0, 0, 9, 9]], [0.6, 0.3]), found([[5, 5, 9, 9]], [0.4]),
            Objects.none(scored=True)]  # fmt: skip
    assert same_answers(as_objects(answer_rows(same)), as_objects(rows)) == (1.0, 0)
    moved = [*same[:1], found([[40, 40, 80, 80]], [0.6]), *same[2:]]
    relabelled = [found([[2, 0, 102, 100], [120, 120, 180, 180]], [0.7, 0.95], [1, 1]),
                  *same[1:]]  # fmt: skip
    extra = [*same[:2], found([[5, 5, 9, 9]], [0.5]), same[3]]
    missing = [found([[2, 0, 102, 100]], [0.7], [0]), *same[1:]]
    for changed in (moved, relabelled, extra, missing):
        assert same_answers(as_objects(answer_rows(changed)), as_objects(rows)) == (0.75, 1)
    assert confident_agreement(base, relabelled) == pytest.approx(2 / 3)  # 0.2 not counted
    assert confident_agreement([base[3]], [base[3]]) is None


# -- device-side NMS, against torchvision's ----------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_nms_keeps_what_torchvision_keeps(seed: int) -> None:
    """Crowded random boxes of three classes: the same boxes kept, in the same order."""
    import torch
    from torchvision.ops import batched_nms as reference

    from edgetl.core.postprocess import batched_nms

    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 100, (300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (300, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    classes = rng.integers(0, 3, 300)
    kept = batched_nms(boxes, scores, classes, 0.5)
    expected = reference(torch.from_numpy(boxes), torch.from_numpy(scores),
                         torch.from_numpy(classes), 0.5).numpy()  # fmt: skip
    np.testing.assert_array_equal(kept.boxes, boxes[expected])
    np.testing.assert_array_equal(kept.classes, classes[expected])


def test_nms_thresholds_and_limits() -> None:
    from edgetl.core.postprocess import batched_nms

    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]],
                     np.float32)  # fmt: skip
    scores = np.array([0.9, 0.8, 0.7, 0.05], np.float32)
    classes = np.array([0, 0, 1, 0])
    kept = batched_nms(boxes, scores, classes, 0.5, score_threshold=0.1)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7])  # the overlap of class 0 dropped
    assert len(batched_nms(boxes, scores, classes, 0.5, max_detections=1)) == 1
    assert len(batched_nms(boxes[:0], scores[:0], classes[:0], 0.5)) == 0
