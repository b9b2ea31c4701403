"""`edgetl finetune --task detect`: the detection set read and split, each image's pyramid
through the feature cache (train images also mirrored, a second cached view), the neck and
head trained on the cached rows, the run written whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from edgetl.core.data.detection_splits import DetectionSplits, load_detection
from edgetl.core.data.imageset import ImageSet
from edgetl.core.data.splits import ROLES
from edgetl.core.errors import EdgetlError
from edgetl.core.events import quiet, say
from edgetl.core.files import atomic_write_text, sha256_file, staged_dir
from edgetl.core.letterbox import Letterbox
from edgetl.core.outputs import check_not_input, claim
from edgetl.core.postprocess import NmsSettings
from edgetl.core.records import RUN_FILE
from edgetl.core.records.detector import DetectorData
from edgetl.core.versions import versions
from edgetl.stages.detect.run import (
    DETECTOR_WEIGHTS,
    PYRAMID_WEIGHTS,
    DetectMetrics,
    DetectRunInfo,
)
from edgetl.stages.finetune.options import AUTO, FinetuneOptions
from edgetl.train.backbones import Backbone, load_backbone
from edgetl.train.detector.fit import DetectorTraining, EpochLine, Examples, fit, outputs, scored
from edgetl.train.detector.model import DetectorHead
from edgetl.train.detector.pyramid import FlatPyramid, Pyramid, PyramidShape, pyramid_of
from edgetl.train.detector.rows import row_precision
from edgetl.train.detector.unfreeze import tail
from edgetl.train.devices import resolve_device
from edgetl.train.distributed import Group
from edgetl.train.extract import default_workers
from edgetl.train.features import CacheReport, cached_features, default_cache_dir, namespace

DETECT_IMAGE_SIZE = 256  # a multiple of 32 (the pyramid's coarsest stride); 224 loses small objects
HISTORY_FILE = "history.csv"
DETECT_BATCH = 16  # rows a step: 64 (the classifier's) gave the scenes 4x fewer steps an epoch
# --lr is the one-cycle peak. The scenes' test mAP50-95 (one seed each, 24 epochs): 0.719 at
# 2e-3, 0.742 at 1e-3 (the default), 0.765 at 5e-4; all dip at epochs 5-6 and recover.
# Val mAP50-95 moves by several points between epochs (the scenes: 0.54 -> 0.35 -> 0.58 in
# epochs 7-9) where the classifier's val loss moves smoothly: patience 5 stopped too early.
MIN_PATIENCE = 8
WIDTH, DEPTH = 64, 2  # neck and tower channels, tower depth: the quickstart's test mAP50-95
# was 0.78 with these and 0.65 with 48 channels and one conv (4.6 s vs 8.5 s an epoch)


class _Views:
    """The images the cache reads: every role, or (mirrored view) train only."""

    def __init__(self, splits: DetectionSplits, train_only: bool):
        self.splits, self.train_only = splits, train_only

    def part(self, role: str) -> ImageSet:
        images = self.splits.images(role)
        return images.subset([]) if self.train_only and role != "train" else images


def check_detect_options(opts: FinetuneOptions) -> None:
    if opts.scratch_baseline or opts.hidden:
        raise EdgetlError("--scratch-baseline and --hidden are for classifiers; leave them out")


def finetune_detector(opts: FinetuneOptions, group: Group | None = None) -> DetectRunInfo | None:
    """The run (rank 0), or None on the other ranks of a torchrun launch: they extract their
    share of the pyramids missing from the cache (train.features), then are done."""
    check_detect_options(opts)
    cache = (opts.cache_dir or default_cache_dir()) if opts.use_cache else None
    if group is not None and not group.leader:
        with quiet():  # rank 0 speaks for the run
            _follow(opts, cache, group)
        return None
    check_not_input(opts.out, {"--data": Path(opts.data), "the feature cache": cache})
    notes: list[str] = []
    with claim(opts.out, opts.force, "run", RUN_FILE, notes):
        for note in notes:
            say(note)
        return _finetune(opts, cache, group)


def _follow(opts: FinetuneOptions, cache: Path | None, group: Group) -> None:
    """A rank other than 0: its share of the pyramids missing from the cache, then (with
    --unfreeze) its share of every batch of the fine-tuning."""
    splits = _splits(opts)
    backbone, pyramid, shape = _pyramid(opts)
    _rows(backbone, pyramid, splits, opts, cache, group)
    if opts.unfreeze in (0, "0"):
        return
    from edgetl.stages.detect.unfreezing import follow

    letterbox = backbone.preprocess
    assert isinstance(letterbox, Letterbox)
    head = DetectorHead(shape, len(splits.classes), WIDTH, DEPTH)  # DDP brings rank 0's
    follow(opts, backbone.model, pyramid, head, splits, letterbox, _training(opts), group)


def _training(opts: FinetuneOptions) -> DetectorTraining:
    batch, patience = min(opts.batch_size, DETECT_BATCH), max(opts.patience, MIN_PATIENCE)
    return DetectorTraining(opts.epochs, batch, opts.lr, patience, seed=opts.seed)


def _splits(opts: FinetuneOptions) -> DetectionSplits:
    torch.manual_seed(opts.seed)
    return load_detection(Path(opts.data), opts.val_fraction, opts.test_fraction, opts.seed)


def _pyramid(opts: FinetuneOptions) -> tuple[Backbone, Pyramid, PyramidShape]:
    return detector_pyramid(opts.backbone, opts.weights, opts.image_size)


def detector_pyramid(name: str, weights: Path | None, size: int | None
                     ) -> tuple[Backbone, Pyramid, PyramidShape]:  # fmt: skip
    """The backbone with its letterbox and the pyramid of its levels at strides 8/16/32."""
    backbone = load_backbone(name, weights)
    base = backbone.preprocess
    letterbox = Letterbox(size or DETECT_IMAGE_SIZE, base.mean, base.std, "bilinear", 1.0)
    backbone = dataclasses.replace(backbone, preprocess=letterbox, features="pyramid 8/16/32")
    pyramid, shape = pyramid_of(backbone)
    return backbone, pyramid, shape


def _finetune(opts: FinetuneOptions, cache: Path | None, group: Group | None) -> DetectRunInfo:
    splits = _splits(opts)
    objects = sum(len(o) for o in splits.train.objects)
    say(
        f"data: {splits.source} ({splits.layout}): {len(splits.classes)} classes, "
        f"{splits.sizes()} images ({splits.strategy}); {objects} train objects, "
        f"{splits.train.negatives} train images without one; val chooses, test is only reported"
    )
    backbone, pyramid, shape = _pyramid(opts)
    if opts.unfreeze not in (0, "0", AUTO):
        tail(pyramid, backbone.model, int(opts.unfreeze))  # an impossible K: exit 2 now
    letterbox = backbone.preprocess
    assert isinstance(letterbox, Letterbox)
    say(f"backbone: {backbone.name} pyramid {shape.channels} at strides {shape.strides}, "
        f"letterbox {letterbox.size}px")  # fmt: skip
    rows, report = _rows(backbone, pyramid, splits, opts, cache, group)
    head = DetectorHead(shape, len(splits.classes), WIDTH, DEPTH)
    train = Examples.joined([
        Examples.of(rows["train"], splits.train, letterbox, head),
        Examples.of(rows["mirrored"], splits.train, _mirrored(letterbox), head),
    ])  # fmt: skip
    settings = NmsSettings()
    training = _training(opts)
    history = fit(head, train, (rows["val"], splits.val), letterbox, settings, training)
    val_float32, precision = rows.pop("val_float32"), None
    if cache is not None:
        device = resolve_device(opts.device)
        views = [namespace(view, device) for view in _views(backbone, pyramid)]
        precision = row_precision(cache, views, head, val_float32, splits.val, letterbox,
                                  settings)  # fmt: skip
    unfrozen = None
    if opts.unfreeze not in (0, "0"):
        from edgetl.stages.detect.unfreezing import unfreeze

        unfrozen = unfreeze(opts, backbone.model, pyramid, head, splits, letterbox, settings,
                            training, history, group)  # fmt: skip
        history, test = unfrozen.history, unfrozen.test
    else:
        test = outputs(head, rows["test"])
    kept = "head" if unfrozen is None or not unfrozen.stages else f"unfreeze {unfrozen.stages}"
    metrics = _metrics(test, splits, letterbox, settings, history, kept)
    say(f"feature cache: {report.line()}")
    info = DetectRunInfo(
        backbone=backbone.describe(), preprocess=letterbox.to_dict(), channels=list(shape.channels),
        width=WIDTH, depth=DEPTH, classes=splits.classes, nms=settings,
        data=DetectorData(splits.source, splits.layout, splits.fingerprint, splits.strategy,
                        {r: len(splits.part(r)) for r in ROLES}, opts.seed,
                        opts.val_fraction, opts.test_fraction),
        metrics=metrics, versions=versions(),
        unfreeze=None if unfrozen is None else unfrozen.record,
        cache_rows=None if precision is None else dataclasses.asdict(precision),
    )  # fmt: skip
    _write(opts.out, (pyramid, head), info, history, opts.force)
    return info


def _rows(
    backbone: Backbone,
    pyramid: Pyramid,
    splits: DetectionSplits,
    opts: FinetuneOptions,
    cache: Path | None,
    group: Group | None = None,
) -> tuple[dict[str, torch.Tensor], CacheReport]:
    """Each role's pyramids as float16 rows, and train's mirrored view ("mirrored"); under
    torchrun each rank extracts its share of both views, and only rank 0 gets rows."""
    flat, mirror = _views(backbone, pyramid)
    workers = default_workers() if opts.workers is None else opts.workers
    device = resolve_device(opts.device) if group is None else group.device(
        resolve_device(opts.device))  # fmt: skip
    batch = min(opts.batch_size, 32)
    views = (_Views(splits, False), _Views(splits, True))
    rows, report = cached_features(flat, views[0], device, batch, workers, cache, group)
    flipped, _ = cached_features(mirror, views[1], device, batch, workers, cache, group)
    if not rows:  # a rank other than 0: its share is in the cache
        return {}, report
    # Training reads rows rounded to float16 (half the memory; row_precision measures what
    # the trained head makes of it); val's float32 rows are kept for that measurement.
    rows = {"val_float32": rows["val"], **{role: value.half() for role, value in rows.items()}}
    rows["mirrored"] = flipped["train"].half()
    return rows, report


def _views(backbone: Backbone, pyramid: Pyramid) -> tuple[Backbone, Backbone]:
    """The cached views' extractors: the pyramid as one flat row, and the same mirrored."""
    flat = dataclasses.replace(backbone, model=FlatPyramid(pyramid))
    return flat, dataclasses.replace(flat, preprocess=_mirrored(flat.preprocess))


def _mirrored(preprocess: object) -> Letterbox:
    assert isinstance(preprocess, Letterbox)
    return dataclasses.replace(preprocess, flip=True)


def _metrics(
    found: list[tuple[Any, Any]],
    splits: DetectionSplits,
    letterbox: Letterbox,
    settings: NmsSettings,
    history: list[EpochLine],
    kept: str,
) -> DetectMetrics:
    """`found`: the trained model's (boxes, scores) on each test image (reported only);
    `kept`: the phase whose best epoch the model holds."""
    best = max((line for line in history if line.phase == kept), key=lambda e: e.val_map50_95)
    test, _ = scored(found, splits.test, letterbox, settings)
    say(
        f"best epoch {best.epoch} ({kept}): val mAP50-95 {best.val_map50_95:.3f}; test "
        f"({len(splits.test)} images no choice was made on) mAP50-95 {test.map50_95:.3f}, "
        f"mAP50 {test.map50:.3f}"
    )
    return DetectMetrics(
        best.epoch, round(best.val_map50_95, 5), round(best.val_map50, 5),
        round(test.map50_95, 5), round(test.map50, 5), len(splits.test),
        sum(len(o) for o in splits.test.objects),
        [None if v is None else round(v, 5) for v in test.per_class],
        round(_mean_seconds(history, "head"), 3),
    )  # fmt: skip


def _mean_seconds(history: list[EpochLine], phase: str) -> float:
    seconds = [line.seconds for line in history if line.phase == phase]
    return sum(seconds) / max(len(seconds), 1)


def _write(
    out: Path,
    modules: tuple[Pyramid, DetectorHead],
    info: DetectRunInfo,
    history: list[EpochLine],
    force: bool,
) -> None:
    import csv
    import io
    import json

    from safetensors.torch import save_file

    own = (RUN_FILE, PYRAMID_WEIGHTS, DETECTOR_WEIGHTS, HISTORY_FILE)
    with staged_dir(out, force, "run", RUN_FILE, own=own) as tmp:
        for name, module in zip((PYRAMID_WEIGHTS, DETECTOR_WEIGHTS), modules, strict=True):
            state = (
                module.features.state_dict() if isinstance(module, Pyramid) else module.state_dict()
            )
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / name))
            info.weights[name] = sha256_file(tmp / name)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([f.name for f in dataclasses.fields(EpochLine)])
        writer.writerows(dataclasses.astuple(line) for line in history)
        atomic_write_text(tmp / HISTORY_FILE, buffer.getvalue())
        atomic_write_text(tmp / RUN_FILE, json.dumps(info.to_dict(), indent=2) + "\n")
