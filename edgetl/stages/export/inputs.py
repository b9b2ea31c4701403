"""Step 2 of an export: the images it measures on, each decoded once, and PyTorch's answers.

val chooses (parity, every guard decision), test is only reported, and the reference set is
a stratified sample of the same decoded test images (so no test image is decoded twice).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgetl.core.artifact.reference import ReferenceSet, seen_digests
from edgetl.core.data.imageset import ImageSet
from edgetl.core.data.splits import Splits
from edgetl.core.events import say
from edgetl.core.measures.metrics import top1
from edgetl.core.ui import heartbeat
from edgetl.quantize.calibration import CalibrationSet, build_calibration
from edgetl.stages.export.plan import Plan, val_sample_size
from edgetl.train.model import Classifier, torch_logits

# Training images the calibration did not use, on which the guard counts a candidate's flips
# against FP32 (no label needed); float16 in memory (1,000 at 224 px: 0.3 GB).
UNLABELLED_IMAGES = 1000
TEST_IMAGES = 2000  # test images the manifest's accuracy is measured on (at most)


@dataclass(frozen=True)
class Inputs:
    """What every later step measures on. Arrays are preprocessed model inputs."""

    splits: Splits  # scanned once: calibration and the head refit read train from it
    model: Classifier
    val: np.ndarray
    val_labels: np.ndarray
    val_torch: np.ndarray  # PyTorch's FP32 logits on val
    test: np.ndarray
    test_labels: np.ndarray
    test_torch: np.ndarray  # PyTorch's FP32 logits on test
    reference: ReferenceSet  # a sample of the test images, as uint8 crops
    # Where each reference image is in `test` (its logits are taken from there); None when
    # the test split is larger than the sample and a reference image lies outside it.
    reference_index: np.ndarray | None
    calibration: CalibrationSet | None  # INT8 only

    @property
    def test_fp32_top1(self) -> float:
        return top1(self.test_torch, self.test_labels)


def load_inputs(plan: Plan, scanned: Splits | None = None) -> Inputs:
    """`scanned`: the run's data when the caller holds it already (not scanned again)."""
    run, opts = plan.run, plan.opts
    splits = run.splits(scanned)
    calibration = None
    if plan.recipe is not None:
        count = plan.recipe.samples if opts.calib_samples is None else opts.calib_samples
        with heartbeat(f"the calibration set ({count} images)"):
            calibration = build_calibration(
                run, splits, opts.calib_data, count, plan.recipe.samples
            )
    int8 = plan.recipe is not None
    val = splits.val.sample(val_sample_size(opts, int8), run.seed)
    test = splits.test.sample(TEST_IMAGES, run.seed)
    picked = splits.test.sample(opts.reference_samples, run.seed)
    say(
        f"export measures on {len(val)} val images (checks{', INT8 guard' if int8 else ''}) and "
        f"{len(test)} test images (reported only); reference set: {len(picked)} test images"
    )
    with heartbeat("decoding the val and test images, PyTorch's logits on them"):
        model = run.classifier()
        val_images = val.arrays(run.preprocess)
        val_torch = torch_logits(model, val_images)
        test_crops = test.crops(run.preprocess)
        test_images = run.preprocess.normalize(test_crops)
        test_torch = torch_logits(model, test_images)
        index = _positions(test, picked)
        if index is None:  # a test split over TEST_IMAGES: the reference images decoded apart
            crops = picked.crops(run.preprocess)
            logits = torch_logits(model, run.preprocess.normalize(crops))
        else:
            crops, logits = test_crops[index], test_torch[index]
    reference = ReferenceSet(crops, picked.labels, logits.astype(np.float32), list(picked.keys))
    reference.seen = seen_digests(splits.train.digests, splits.val.digests)
    return Inputs(
        splits,
        model,
        val_images,
        val.labels,
        val_torch,
        test_images,
        test.labels,
        test_torch,
        reference,
        index,
        calibration,
    )


def unlabelled_images(plan: Plan, inputs: Inputs) -> Callable[[], np.ndarray] | None:
    """Up to UNLABELLED_IMAGES training images the calibration did not use, decoded when the
    guard first needs them (a candidate whose val bound fits); None when there are none."""
    train, calibration = inputs.splits.train, inputs.calibration
    used = set(calibration.files) if calibration is not None else set()
    rest = [i for i, key in enumerate(train.keys) if key not in used]
    if not rest:
        return None
    picked = train.subset(rest).sample(UNLABELLED_IMAGES, plan.run.seed)

    def decode() -> np.ndarray:
        with heartbeat(f"decoding {len(picked)} unlabelled training images"):
            batches = picked.batches(plan.run.preprocess, 64)
            return np.concatenate([b.astype(np.float16) for b, _ in batches])

    return decode


def _positions(test: ImageSet, picked: ImageSet) -> np.ndarray | None:
    """Where each reference image is in the test sample; None when one is not in it."""
    position = {key: i for i, key in enumerate(test.keys)}
    if any(key not in position for key in picked.keys):
        return None
    return np.asarray([position[key] for key in picked.keys], dtype=np.int64)
