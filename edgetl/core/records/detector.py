"""A detector artifact's manifest (ART/manifest.json, schema edgetl.detector-manifest/1): how
to run it (runtime, model files, letterbox, NMS settings and where NMS runs), its mAP on val
and test beside FP32's, its parity and the INT8 guard's record. Device side: no torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.core.artifact.integrity import (
    check_digest,
    check_external_data,
    check_loaded_files,
)
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import read_fields, write_fields
from edgetl.core.files import read_json
from edgetl.core.letterbox import Letterbox
from edgetl.core.measures.timing import Latency
from edgetl.core.postprocess import NmsSettings
from edgetl.core.records.base import check_classes, open_record
from edgetl.core.records.manifest import (
    MANIFEST_FILE,
    Attempt,
    Compiled,
    RuntimeSpec,
    Sensitivity,
    verify_listed,
    write_manifest,
)
from edgetl.core.records.robustness import Robustness
from edgetl.core.targets import BackendName

DETECTOR_SCHEMA = "edgetl.detector-manifest/1"
OUTPUTS = ("boxes", "scores")  # (N, L, 4) in input pixels, (N, L, C) per-class scores
NMS_ON_DEVICE = "device-numpy"  # core/postprocess.batched_nms after the graph
NMS_IN_GRAPH = "graph"  # ONNX NonMaxSuppression + TopK at the graph's end
GRAPH_OUTPUTS = ("det_boxes", "det_scores", "det_classes")  # (K, 4), (K,), (K,): with NMS


@dataclass(frozen=True)
class DetectorData:
    """The run's data: its folder, fingerprint, and how the missing splits were carved."""

    source: str
    layout: str
    fingerprint: str
    strategy: str
    sizes: dict[str, int]
    seed: int
    val_fraction: float
    test_fraction: float

    def load(self) -> Any:
        """The run's own splits (a DetectionSplits), read again; EdgetlError when the data
        changed since the run was trained."""
        from edgetl.core.data.detection_splits import load_detection

        splits = load_detection(Path(self.source), self.val_fraction, self.test_fraction,
                                self.seed)  # fmt: skip
        if splits.fingerprint != self.fingerprint:
            raise EdgetlError(
                f"{self.source}: the data changed since the run was trained (its fingerprint "
                "differs); finetune again, or measure on other data with --data"
            )
        return splits


@dataclass(frozen=True)
class DetectorRunRef:
    path: str
    sha256: str
    backbone: str
    data: DetectorData


@dataclass(frozen=True)
class MapAccuracy:
    """The artifact's mAP on a split beside FP32 PyTorch's on the same images."""

    n: int
    objects: int
    map50_95: float
    map50: float
    fp32_map50_95: float
    fp32_map50: float
    agreement: float | None  # share of FP32's detections reproduced (class, IoU >= 0.5)
    per_class: list[float | None] = field(default_factory=list)

    @property
    def drop_pts(self) -> float:
        return round((self.fp32_map50_95 - self.map50_95) * 100, 4)


@dataclass(frozen=True)
class DetectorParity:
    """The compiled artifact against the graph it came from, on val: raw outputs."""

    n: int
    max_abs_diff_scores: float
    max_abs_diff_boxes_px: float
    agreement: float | None
    # The artifact's other graphs (TensorRT 11's FP16-typed ONNX) on the host proxy, by file:
    # their val mAP50-95 and the drop's upper bound against FP32, under the guard's rule.
    host_checks: dict[str, dict[str, float]] | None = field(default=None, metadata={"omit": None})


@dataclass(frozen=True)
class NmsChoice:
    """Where NMS runs, measured at export: batch-1 p50 (ms) of the artifact with NMS in NumPy
    after the graph and with NMS in the graph, interleaved on val images, on the runtime
    that measures here; the faster ships. `agreement`: the graph's NMS against NumPy's.
    None and a `note` where the target's runtime is not here to time them (TensorRT)."""

    numpy_p50_ms: float | None
    graph_p50_ms: float | None
    agreement: float | None
    note: str | None = field(default=None, metadata={"omit": None})


@dataclass(frozen=True)
class DetectorQuantization:
    recipe: str
    calibration_images: int
    budget_pts: float  # mAP50-95 points
    confidence: float
    rule: str
    attempts: list[Attempt]  # top1 holds each candidate's val mAP50-95 (metric: map50_95)
    float_layers: list[str]
    sensitivities: list[Sensitivity]
    metric: str = "map50_95"
    # FP32 and INT8 graphs timed side by side here (quantize/int8.compare_speed); {} on a proxy
    speed_here: dict[str, Any] = field(default_factory=dict)
    # the float layers run in FP16 (a target with float_layers = "fp16", the guard accepting it)
    float16: bool = False


@dataclass
class DetectorManifest(Compiled):
    threads: int
    host_proxy: BackendName | None
    input_shape: list[int | None]
    outputs: list[str]
    preprocess: dict[str, Any]  # the letterbox (core/letterbox.py)
    classes: list[str]
    nms: NmsSettings
    nms_where: str  # NMS_ON_DEVICE or NMS_IN_GRAPH
    nms_choice: NmsChoice
    run: DetectorRunRef
    val: MapAccuracy
    test: MapAccuracy
    parity: DetectorParity
    compile_s: float
    versions: dict[str, str]
    quantization: DetectorQuantization | None = field(default=None, metadata={"omit": None})
    reference: str | None = field(default=None, metadata={"omit": None})  # its .npz file
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    task: str = "detect"
    edgetl: str = __version__
    schema: str = DETECTOR_SCHEMA
    digest: str = ""

    @property
    def letterbox(self) -> Letterbox:
        return Letterbox.from_dict(self.preprocess)

    @property
    def name(self) -> str:
        return f"{self.target}-{self.precision}"

    def runtime_spec(self, threads: int | None = None) -> RuntimeSpec:
        return RuntimeSpec(
            list(self.model_files), self.device, dict(self.runtime_options),
            self.threads if threads is None else threads,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)

    def write(self, root: Path) -> None:
        """Every file under `root` listed with its sha256; manifest.json written atomically
        with its digest."""
        write_manifest(self, root)

    @classmethod
    def read(cls, root: Path, verify: bool = True, trust: Sequence[Any] = ()) -> DetectorManifest:
        path = root / MANIFEST_FILE
        data = read_json(path, f"{MANIFEST_FILE} (is this an edgetl artifact?)")
        source = open_record(data, path, (DETECTOR_SCHEMA,), "Re-run `edgetl export`.")
        manifest = read_fields(cls, data, source)
        manifest.classes = check_classes(manifest.classes, path)
        manifest.digest = check_digest(data, path)
        check_loaded_files(manifest.files, manifest.model_files, path)
        if trust:
            from edgetl.core.artifact.signing import verify as verify_signature

            verify_signature(root, manifest.digest, trust)
        if verify:
            verify_listed(root, manifest.files)
            check_external_data(root, manifest.files, manifest.model_files)
        return manifest


def is_detector(root: Path) -> bool:
    """Whether the artifact at `root` is a detector's (its manifest says so)."""
    try:
        return read_json(root / MANIFEST_FILE, MANIFEST_FILE).get("schema") == DETECTOR_SCHEMA
    except Exception:  # no manifest, or not JSON: the classifier's reader says what is wrong
        return False


DETECT_BENCH_SCHEMA = "edgetl.detect-bench/1"


@dataclass
class DetectBenchEntry:
    name: str
    path: str
    backend: str
    device: str
    precision: str
    proxy_for: str | None
    images: int
    objects: int
    map50_95: float
    map50: float
    per_class: list[float | None]
    latency: Latency  # batch 1: letterboxed image -> graph -> NMS -> original pixels
    graph_p50_ms: float
    nms_p50_ms: float  # after the graph: NumPy NMS, or (NMS in the graph) the mapping back
    nms_where: str
    checks: dict[str, str] = field(default_factory=dict)
    # bench --robustness: mAP50-95 on the reference set under camera conditions
    robustness: Robustness | None = field(default=None, metadata={"omit": None})
    # each image's detections scoring >= 0.5 (core/measures/answers.py): compared image by
    # image with a baseline's, on a device as here
    answers: list[list[list[float]]] = field(default_factory=list)
    # the share of FP32 PyTorch's answers reproduced: on the artifact's reference set, which
    # carries FP32's detections (elsewhere a device has no PyTorch to ask)
    agreement: float | None = field(default=None, metadata={"omit": None})
    # the checks against a baseline that failed ("map", "latency", "robustness"): the JUnit
    # report's failed cases
    failed: list[str] = field(default_factory=list)

    @property
    def nms_share(self) -> float:
        return self.nms_p50_ms / max(self.graph_p50_ms + self.nms_p50_ms, 1e-9)


@dataclass
class DetectBenchReport:
    data: str
    split: str
    results: list[DetectBenchEntry]
    failures: list[str] = field(default_factory=list)
    schema: str = DETECT_BENCH_SCHEMA

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)
