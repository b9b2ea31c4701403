"""`edgetl search` on a detection set (a YOLO or COCO folder): each backbone x input size a
detector run (its pyramids from the feature cache), each precision exported under the mAP
guard, every artifact then timed batch-1 with NMS in the same interleaved rounds on this
machine's runtime for the target; the highest val mAP50-95 within --max-latency is chosen
(ties: the faster). Choices are made on val only; test is reported for the chosen model.
SEARCH/chosen is its artifact. A re-run reuses every run and artifact already complete.

With --on DEVICE the artifacts are timed on that lab device instead (each copied there once,
by content, with the first val images: `edgetl probe-latency` detects them in turn).

Before training, every architecture's graph is timed untrained and without NMS (a detector's
NMS works on its detections, so the untrained graph is a lower bound: arch_latency.py), here
or with --on on the device; a precision whose bound is over --max-latency is not trained or
exported."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.detector import DetectorModel, in_turn, load_detector
from edgetl.backends.probe import artifact_probe
from edgetl.backends.profiles import load_target
from edgetl.core.data.detection_splits import DetectionSplits, load_detection
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say, section
from edgetl.core.fields import write_fields
from edgetl.core.files import atomic_write_json, read_json, staged_dir
from edgetl.core.measures.timing import interleaved_samples, rounds_for
from edgetl.core.records.manifest import MANIFEST_FILE
from edgetl.core.ui import heartbeat
from edgetl.stages.search.options import SearchOptions
from edgetl.stages.search.state import ADDED_SETTINGS

SEARCH_FILE = "search.json"
SCHEMA = "edgetl.detect-search/1"
PRECISIONS = ("fp32", "int8")  # what a detector exports for a CPU or OpenVINO target
NO_PAYOFF = "int8 does not pay off"
OVER_BEFORE = "over budget before training"
TIMED_IMAGES = 16  # val images each artifact detects in turn while timed
PROBE_INPUTS = "inputs.npz"


@dataclass
class DetectCandidate:
    key: str
    backbone: str
    size: int
    precision: str
    # or "refused" (the guard), "failed" (an export check), NO_PAYOFF, OVER_BEFORE
    status: str = "measured"
    reason: str = ""
    artifact: str | None = None
    val_map50_95: float | None = None
    latency_ms: float | None = None  # the search's --latency statistic, batch 1 with NMS
    runtime: str | None = None  # what timed it: "onnxruntime here", "openvino on orin1"
    within_budget: bool | None = None
    on_front: bool = False
    # its graph untrained and without NMS, timed before training (arch_latency.py): a lower
    # bound of latency_ms (here, or on the --on device); None for a run trained earlier
    before_training_ms: float | None = None


@dataclass
class DetectSearchReport:
    data: str
    target: str
    budget_ms: float
    latency: str
    settings: dict[str, Any]  # what a resumed search must have been asked the same
    candidates: list[DetectCandidate] = field(default_factory=list)
    chosen: str | None = None
    chosen_test: dict[str, Any] | None = None  # its test mAP beside FP32's: reported only
    schema: str = SCHEMA

    @property
    def passed(self) -> bool:
        return self.chosen is not None

    @property
    def failures(self) -> list[str]:
        if self.passed:
            return []
        return [f"no candidate meets --max-latency {self.budget_ms:g} ms ({self.latency})"]

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)


def search_detectors(opts: SearchOptions) -> DetectSearchReport:
    _check(opts)
    # Read (every image hashed) once: the calibration check and the untrained timing use it
    splits = load_detection(Path(opts.data), opts.val_fraction, opts.test_fraction, opts.seed)
    _check_calibration(opts, splits)
    assert opts.max_latency_ms is not None
    report = DetectSearchReport(opts.data, opts.target, opts.max_latency_ms, opts.latency,
                                opts.settings())  # fmt: skip
    _start(opts, report.settings)
    bounds = _before_training(opts, splits)
    for backbone in opts.backbones:
        for size in opts.sizes:
            over = [_over_budget(opts, backbone, size, p, bounds) for p in _precisions(opts)]
            report.candidates += [c for c in over if c is not None]
            left = [p for p, c in zip(_precisions(opts), over, strict=True) if c is None]
            if not left:
                continue
            run = _run(opts, backbone, size)
            report.candidates += [_export(opts, run, backbone, size, precision, bounds)
                                  for precision in left]  # fmt: skip
    _time(opts, report)
    _drop_unpaid(report, opts.int8_payoff)
    _choose(report)
    if report.chosen is not None:
        _keep_chosen(opts, report)
    atomic_write_json(opts.out / SEARCH_FILE, report.to_dict())
    return report


def _before_training(opts: SearchOptions, splits: DetectionSplits) -> dict[str, float]:
    """The --latency statistic of every architecture not trained yet, untrained and without
    NMS (arch_latency.py: a lower bound of its artifact's), timed here or, with --on, on
    the lab device (each compiled into SEARCH/probes/untrained-KEY, copied once by
    content)."""
    from edgetl.stages.detect.arch_latency import Arch, compile_untrained, time_untrained
    from edgetl.stages.detect.run import is_detect_run

    archs = [Arch(b, s, p) for b in opts.backbones for s in opts.sizes for p in _precisions(opts)
             if not is_detect_run(opts.out / "runs" / f"{b}-{s}")]  # fmt: skip
    if not archs:
        return {}
    section(f"latency before training: {len(archs)} architectures, untrained, without NMS")
    profile = load_target(opts.target)
    if opts.on is None:
        timed = time_untrained(archs, opts.weights, splits, profile, opts.iterations)
    else:
        from edgetl.stages.lab.probes import time_on

        folders = {}
        for arch in archs:
            folder = opts.out / "probes" / f"untrained-{arch.key}"
            with heartbeat(f"{arch.key}: an untrained head compiled for {profile.name}"):
                compile_untrained(arch, opts.weights, splits, profile, folder)
            folders[arch.key] = folder
        timed = time_on(folders, profile.backend, opts.on, opts.lab, opts.iterations)
    statistic = "p90_ms" if opts.latency == "p90" else "p50_ms"
    return {key: float(arch.to_dict()[statistic]) for key, arch in timed.items()}


def _over_budget(opts: SearchOptions, backbone: str, size: int, precision: str,
                 bounds: dict[str, float]) -> DetectCandidate | None:  # fmt: skip
    """The candidate left untrained, when its graph alone is already over the budget."""
    assert opts.max_latency_ms is not None
    found = DetectCandidate(f"{backbone}-{size}-{precision}", backbone, size, precision)
    bound = bounds.get(found.key)
    if bound is None or bound <= opts.max_latency_ms:
        return None
    found.status, found.before_training_ms, found.within_budget = OVER_BEFORE, bound, False
    found.reason = (f"{opts.latency} {bound:.2f} ms > {opts.max_latency_ms:g} ms untrained, "
                    "before NMS: not trained")  # fmt: skip
    say(f"{found.key}: {found.reason}")
    return found


def _start(opts: SearchOptions, settings: dict[str, Any]) -> None:
    """A new search folder; --force empties edgetl's own one; else the runs and artifacts of
    a search asked the same are reused (another's is exit 2, naming what differs)."""
    path = opts.out / SEARCH_FILE
    ours = path.is_file() or (opts.out / "runs").is_dir()
    if opts.out.exists() and any(opts.out.iterdir()) and not ours:
        raise EdgetlError(f"--out {opts.out}: not empty and not an edgetl search; choose another")
    if opts.force:
        for name in ("runs", "artifacts", "chosen"):
            shutil.rmtree(opts.out / name, ignore_errors=True)
        path.unlink(missing_ok=True)
    elif path.is_file():
        before = {**ADDED_SETTINGS, **read_json(path, SEARCH_FILE).get("settings", {})}
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            raise EdgetlError(f"{path}: a search with other settings ({', '.join(changed)}); "
                              "use another --out, or --force to start again")  # fmt: skip
    opts.out.mkdir(parents=True, exist_ok=True)


def _check(opts: SearchOptions) -> None:
    refused = {
        "--reference / --max-latency Nx": opts.reference is not None or opts.max_latency_x,
        "--heads": opts.heads != ["linear"],
        "--unfreeze": opts.unfreeze != [0],
        "--max-size": opts.max_size_mb is not None,
        "--budget-minutes": opts.budget_minutes is not None,
    }
    named = [name for name, given in refused.items() if given]
    if named:
        raise EdgetlError(f"{', '.join(named)}: not for a detector search yet (it trains every "
                          "backbone x size and times the artifacts)")  # fmt: skip
    profile = load_target(opts.target)
    if profile.backend not in ("onnxruntime", "openvino") and opts.on is None:
        raise EdgetlError(
            f"--target {profile.name}: {profile.backend} is not here to time the artifacts; "
            "search a CPU or OpenVINO target, or give --on DEVICE (a lab device with it)"
        )
    extra = [p for p in opts.precisions or () if p not in PRECISIONS]
    if extra:
        raise EdgetlError(f"--precisions {','.join(extra)}: a detector search takes fp32,int8")


def _check_calibration(opts: SearchOptions, splits: DetectionSplits) -> None:
    """INT8 asked of a train split too small to calibrate: exit 2 before anything is trained
    (each INT8 export would refuse it after its run was)."""
    from edgetl.quantize.calibration import MIN_SAMPLES

    if "int8" in _precisions(opts) and len(splits.train) < MIN_SAMPLES:
        raise EdgetlError(
            f"--data {opts.data}: train has {len(splits.train)} images and INT8 calibration "
            f"needs {MIN_SAMPLES}; give more images, or --precisions fp32"
        )


def _precisions(opts: SearchOptions) -> list[str]:
    return list(opts.precisions or PRECISIONS)


def _run(opts: SearchOptions, backbone: str, size: int) -> Path:
    """The detector run of `backbone` at `size` (reused when complete)."""
    from edgetl.stages.detect.run import is_detect_run
    from edgetl.stages.detect.training import finetune_detector
    from edgetl.stages.finetune.options import FinetuneOptions

    out = opts.out / "runs" / f"{backbone}-{size}"
    if is_detect_run(out):
        say(f"{out}: trained earlier, reused")
        return out
    section(f"finetune {backbone} at {size} px")
    finetune_detector(FinetuneOptions(
        data=opts.data, out=out, backbone=backbone, weights=opts.weights, image_size=size,
        epochs=opts.epochs, seed=opts.seed, task="detect", cache_dir=opts.cache_dir,
        val_fraction=opts.val_fraction, test_fraction=opts.test_fraction, workers=opts.workers,
    ))  # fmt: skip
    return out


def _export(opts: SearchOptions, run: Path, backbone: str, size: int, precision: str,
            bounds: dict[str, float]) -> DetectCandidate:  # fmt: skip
    from edgetl.stages.detect.export import export_detector
    from edgetl.stages.export.options import ExportOptions

    key = f"{backbone}-{size}-{precision}"
    found = DetectCandidate(key, backbone, size, precision, before_training_ms=bounds.get(key))
    out = opts.out / "artifacts" / key
    if not (out / MANIFEST_FILE).is_file():
        section(f"export {key}")
        result = export_detector(ExportOptions(
            run=run, target=opts.target, precision=precision, out=out,
            max_accuracy_drop=opts.max_accuracy_drop, force=True,
        ))  # fmt: skip
        if result.manifest is None:
            found.status = "refused" if "refused" in " ".join(result.failures) else "failed"
            found.reason = "; ".join(result.failures)
            return found
    found.artifact = str(out)
    return found


def _time(opts: SearchOptions, report: DetectSearchReport) -> None:
    """Every artifact batch-1 with NMS on the first val images in turn, in shared rounds:
    here, or with --on on the lab device."""
    measured = [c for c in report.candidates if c.artifact is not None]
    if not measured:
        return
    models = {c.key: load_detector(Path(str(c.artifact))) for c in measured}
    for candidate in measured:
        candidate.val_map50_95 = models[candidate.key].manifest.val.map50_95
    splits = next(iter(models.values())).manifest.run.data.load()  # every run's: opts.data
    val = splits.images("val")
    count = min(TIMED_IMAGES, len(val))
    sizes = splits.val.sizes[:count]
    crops = {key: np.stack([val.crop(i, model.letterbox) for i in range(count)])
             for key, model in models.items()}  # fmt: skip
    if opts.on is None:
        samples = _here(opts, models, crops, sizes)
        where = f"{next(iter(models.values())).manifest.backend} here"
    else:
        samples = _on(opts, models, crops, sizes)
        where = f"{load_target(opts.target).backend} on {opts.on}"
    statistic = 90 if opts.latency == "p90" else 50
    for candidate in measured:
        value = float(np.percentile(samples[candidate.key], statistic))
        candidate.latency_ms, candidate.runtime = round(value, 4), where
        candidate.within_budget = value <= report.budget_ms
    for model in models.values():
        model.close()


def _here(
    opts: SearchOptions,
    models: dict[str, DetectorModel],
    crops: dict[str, np.ndarray],
    sizes: list[tuple[int, int]],
) -> dict[str, np.ndarray]:
    calls = {key: in_turn(model.runner, model.manifest, model.letterbox.normalize(crops[key]),
                          sizes)
             for key, model in models.items()}  # fmt: skip
    what = f"timing {len(calls)} artifacts, batch 1 with NMS, {opts.iterations} samples each"
    with heartbeat(what):  # interleaved rounds count nothing of their own
        return interleaved_samples(calls, opts.iterations, rounds_for(opts.iterations))


def _on(
    opts: SearchOptions,
    models: dict[str, DetectorModel],
    crops: dict[str, np.ndarray],
    sizes: list[tuple[int, int]],
) -> dict[str, np.ndarray]:
    """Each artifact copied with its val images into SEARCH/probes/KEY (a probe folder), all
    timed on the device in one interleaved run; its p50 and p90 come back (no samples), so
    the statistic asked for is returned as the one sample."""
    from edgetl.stages.lab.probes import time_on

    folders = {}
    for key, model in models.items():
        folder = artifact_probe(model.path, model.manifest, model.letterbox.size,
                                opts.out / "probes" / key, PROBE_INPUTS)  # fmt: skip
        np.savez(folder / PROBE_INPUTS, images=crops[key], sizes=np.asarray(sizes, np.int64))
        folders[key] = folder
    assert opts.on is not None
    timed = time_on(folders, load_target(opts.target).backend, opts.on, opts.lab,
                    opts.iterations)  # fmt: skip
    field_ = "p90" if opts.latency == "p90" else "p50"
    return {key: np.asarray([getattr(found.latency, field_)]) for key, found in timed.items()}


def _drop_unpaid(report: DetectSearchReport, pays_off_at: float) -> None:
    """INT8 artifacts slower than `pays_off_at` x their FP32 twin (timed in the same rounds)
    leave the running."""
    fp32 = {(c.backbone, c.size): c for c in report.candidates
            if c.precision == "fp32" and c.latency_ms is not None}  # fmt: skip
    for candidate in report.candidates:
        twin = fp32.get((candidate.backbone, candidate.size))
        if candidate.precision != "int8" or twin is None or candidate.latency_ms is None:
            continue
        assert twin.latency_ms is not None
        ratio = candidate.latency_ms / twin.latency_ms
        if ratio > pays_off_at:
            candidate.status = NO_PAYOFF
            candidate.reason = (f"{ratio:.2f}x FP32's {twin.latency_ms:.2f} ms (INT8 must be "
                                f"<= {pays_off_at:g}x to pay off)")  # fmt: skip


def _choose(report: DetectSearchReport) -> None:
    """The Pareto front (latency down, val mAP up) and, within budget, the best val mAP."""
    timed = sorted((c for c in report.candidates
                    if c.latency_ms is not None and c.status == "measured"),
                   key=lambda c: (c.latency_ms, -(c.val_map50_95 or 0.0)))  # fmt: skip
    best = -1.0
    for candidate in timed:
        if (candidate.val_map50_95 or 0.0) > best:
            candidate.on_front, best = True, candidate.val_map50_95 or 0.0
    within = [c for c in timed if c.within_budget]
    if within:
        chosen = max(within, key=lambda c: (c.val_map50_95 or 0.0, -(c.latency_ms or 0.0)))
        report.chosen = chosen.key


def _keep_chosen(opts: SearchOptions, report: DetectSearchReport) -> None:
    """SEARCH/chosen: a copy of the chosen artifact (whole, or not at all); its test mAP."""
    chosen = next(c for c in report.candidates if c.key == report.chosen)
    source = Path(str(chosen.artifact))
    with staged_dir(opts.out / "chosen", True, "export", MANIFEST_FILE) as out:
        for path in source.iterdir():
            shutil.copy2(path, out / path.name)
    test = load_detector(opts.out / "chosen").manifest.test
    report.chosen_test = write_fields(test)
    say(f"chosen on val: {chosen.key} (val mAP50-95 {chosen.val_map50_95:.4f}, "
        f"{report.latency} {chosen.latency_ms:.2f} ms); test mAP50-95 {test.map50_95:.4f} "
        f"(FP32 {test.fp32_map50_95:.4f}, {test.n} images, reported only)")  # fmt: skip
