"""`edgetl build` of a detector bundle, its check: the engine's detections on the bundle's
reference set against the host's detections of the same graph (core/artifact/
detection_reference.py), by agreement (same class, IoU >= 0.5) at the profile's
device_parity min_agreement; the mAP of both on the reference boxes is recorded beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetl.backends.detector import detect
from edgetl.backends.tensorrt.options import TensorRtOptions
from edgetl.backends.tensorrt.record import ENGINE_RECORD
from edgetl.backends.tensorrt.runtime import ENGINE_FILE, TensorRtRuntime
from edgetl.core.artifact.detection_reference import DetectionReference
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.detection import agreement, coco_map
from edgetl.core.records import MANIFEST_FILE
from edgetl.core.records.detector import DetectorManifest


def check_detector(bundle: Path, manifest: DetectorManifest, runner: Any = None) -> dict[str, Any]:
    """The built engine (or `runner`, what runs the bundle) on the reference set; CheckFailed,
    engine and record removed, below the profile's agreement."""
    if manifest.reference is None:
        raise EdgetlError(f"{bundle}: the bundle has no reference set; export again")
    reference = DetectionReference.load(bundle / manifest.reference)
    where = str(bundle / MANIFEST_FILE)
    options: TensorRtOptions = TensorRtRuntime().options(manifest.runtime_options, where)
    tolerance = options.device_parity.get(manifest.precision)
    if tolerance is None:
        raise EdgetlError(f"{bundle}: the profile gives no device_parity for {manifest.precision}")
    owned = runner is None
    runner = TensorRtRuntime().load(bundle, manifest.runtime_spec()) if owned else runner
    try:
        images = manifest.letterbox.normalize(reference.images)
        found = detect(runner, images, reference.sizes, manifest)
    finally:
        if owned:
            runner.close()
    result = _compared(reference, found, tolerance.min_agreement)
    say(f"engine vs host on {result['n']} reference images: detections agreement "
        f"{result['agreement']:.2%}, mAP50-95 {result['map50_95']:.4f} (host "
        f"{result['host_map50_95']:.4f})")  # fmt: skip
    if not result["passed"]:
        refuse(bundle, f"detections agreement {result['agreement']:.2%} < "
                       f"{result['min_agreement']:.2%}")  # fmt: skip
    return result


def _compared(reference: DetectionReference, found: list[Any], minimum: float) -> dict[str, Any]:
    classes = len(reference.classes)
    agreed = agreement(reference.artifact, found)
    ours = coco_map(reference.truth, found, reference.sizes, classes).map50_95
    host = coco_map(reference.truth, reference.artifact, reference.sizes, classes).map50_95
    return {
        "n": len(reference), "agreement": 1.0 if agreed is None else round(agreed, 5),
        "min_agreement": minimum, "map50_95": round(ours, 5), "host_map50_95": round(host, 5),
        "passed": agreed is None or agreed >= minimum,
    }  # fmt: skip


def refuse(bundle: Path, shortfall: str) -> None:
    """Never leave an engine that looks good, nor a record of one that is gone (the lab then
    said "no model.engine yet" instead of rebuilding)."""
    for name in (ENGINE_FILE, ENGINE_RECORD):
        (bundle / name).unlink(missing_ok=True)
    raise CheckFailed(
        f"the engine differs from the host's model beyond the profile's device_parity: "
        f"{shortfall}; engine and engine record removed"
    )
