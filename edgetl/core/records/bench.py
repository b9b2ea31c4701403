"""The bench report (`edgetl bench --json`, schema edgetl.bench/1, extended compatibly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl import __version__
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import read_fields, write_fields
from edgetl.core.files import atomic_write_json, read_json
from edgetl.core.records.accuracy import Accuracy
from edgetl.core.records.base import open_record
from edgetl.core.records.robustness import Robustness, RobustnessCheck

BENCH_SCHEMA = "edgetl.bench/1"
MIN_BASELINE_SAMPLES = 10  # fewer make the interval of a median meaningless


@dataclass(frozen=True, kw_only=True)
class BenchAccuracy(Accuracy):
    """Top-1/top-5 on the images measured, agreement with the FP32 model where its logits
    are known, per class, the confusion matrix (rows: true class)."""

    top5: float = 0.0
    agreement: float | None = None
    per_class: dict[str, Accuracy] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    absent_classes: list[str] = field(default_factory=list)
    # Each image's top-1 class, in the data's order: a baseline made elsewhere (the x86
    # host, another board) is compared image by image, not only in top-1
    predictions: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LatencyCheck:
    """The latency verdict against a baseline (core/measures/regression.LatencyVerdict), in
    words too."""

    ratio: float  # candidate p50 / baseline p50
    low: float  # its confidence interval
    high: float
    threshold_pct: float
    method: str
    regressed: bool
    verdict: str
    line: str
    warning: str = ""


@dataclass(frozen=True)
class AccuracyCheck:
    drop_pts: float  # baseline top-1 minus this one's, points
    max_drop_pts: float
    compared: bool  # only when both measured the same number of images
    failed: bool
    # Share of images with the baseline's top-1 answer (both recorded predictions), and
    # how many differ: an ARM CPU's INT8 kernels against the x86 host's, say
    same_answers: float | None = field(default=None, metadata={"omit": None})
    differing: int | None = field(default=None, metadata={"omit": None})


@dataclass
class BaselineChecks:
    """What `bench --baseline` found for one artifact ({} without a baseline)."""

    baseline: str | None = field(default=None, metadata={"omit": None})  # why not compared
    latency: LatencyCheck | None = field(default=None, metadata={"omit": None})
    accuracy: AccuracyCheck | None = field(default=None, metadata={"omit": None})
    robustness: RobustnessCheck | None = field(default=None, metadata={"omit": None})


@dataclass
class BenchResult:
    """One artifact's numbers in an edgetl.bench/1 report."""

    artifact: str
    name: str
    target: str
    backend: str
    precision: str
    accuracy: BenchAccuracy
    latency_ms: dict[str, float]
    samples_ms: list[float]
    iterations: int
    warmup: int
    batch_size: int
    throughput_ips: float
    load_s: float
    first_inference_ms: float
    peak_rss_mb: float
    size_mb: float
    env: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # Added compatibly to edgetl.bench/1: absent in older reports.
    rounds: int = 1
    cv: float = 0.0  # coefficient of variation of the batch-1 samples
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # "8" -> latency, ips
    rss_before_load_mb: float = 0.0
    checks: BaselineChecks = field(default_factory=BaselineChecks)  # against --baseline
    # The artifact's own runtime when `backend` is a host proxy standing in for it (e.g.
    # ONNX Runtime for a TensorRT bundle on a host): its latency is not the device's.
    proxy_for: str = ""
    # bench --robustness: camera conditions and the teacher-transfer attack (absent without)
    robustness: Robustness | None = field(default=None, metadata={"omit": None})

    def stored_samples(self, path: Path | str, index: int) -> np.ndarray:
        """The raw latency samples as a baseline: enough of them, every one finite and
        positive (all-zero or NaN samples made every candidate "+inf% within threshold")."""
        where = f"{path}: results[{index}].samples_ms"
        samples = np.asarray(self.samples_ms, dtype=np.float64)
        if len(samples) < MIN_BASELINE_SAMPLES:
            raise EdgetlError(
                f"{where} holds {len(samples)} samples; a baseline needs at least "
                f"{MIN_BASELINE_SAMPLES}. Re-run `edgetl bench --json` with more --iterations"
            )
        bad = int(np.sum(~np.isfinite(samples) | (samples <= 0)))
        if bad:
            raise EdgetlError(
                f"{where}: {bad} of {len(samples)} samples are not positive finite milliseconds; "
                "the report is damaged, re-run `edgetl bench --json`"
            )
        if not 0.0 <= self.accuracy.top1 <= 1.0:
            raise EdgetlError(f"{path}: results[{index}].accuracy.top1 is not between 0 and 1")
        return samples


@dataclass
class BenchReport:
    """What `edgetl bench --json` writes (schema edgetl.bench/1, extended compatibly)."""

    created: str
    data: str  # "reference set", a directory, or "SOURCE (split S)"
    command: list[str]
    results: list[BenchResult]
    edgetl: str = __version__
    schema: str = BENCH_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> BenchReport:
        data = read_json(path, "bench report (from `edgetl bench --json`)")
        remedy = "Re-run `edgetl bench --json` with this version."
        return read_fields(cls, data, open_record(data, path, (BENCH_SCHEMA,), remedy))
