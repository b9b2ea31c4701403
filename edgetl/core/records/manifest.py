"""The artifact's manifest (ART/manifest.json): its contract with whoever runs it. Every
block is typed: parity, accuracy, and the INT8 guard's quantization record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.core.artifact.integrity import (
    check_digest,
    check_external_data,
    check_loaded_files,
    digest,
)
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import read_fields, write_fields
from edgetl.core.files import atomic_write_json, read_json, sha256_file
from edgetl.core.preprocess import Preprocess
from edgetl.core.records.accuracy import Accuracy
from edgetl.core.records.base import check_classes, open_record
from edgetl.core.records.recipe import Recipe
from edgetl.core.records.run import RUN_FILE, DataInfo
from edgetl.core.targets import BackendName, Parity, Precision

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "edgetl.manifest/4"  # 4: test accuracy stored once (accuracy.test)
# Read too: 3 (the manifest's own digest) kept the test numbers twice, quantization.test too.
MANIFEST_SCHEMAS = (MANIFEST_SCHEMA, "edgetl.manifest/3")


@dataclass(frozen=True)
class RuntimeSpec:
    """How a backend loads an artifact's model files: from its manifest, or a profile at export."""

    model_files: list[str]
    device: str = "CPU"
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 0


@dataclass(frozen=True)
class RunRef:
    """The run an artifact came from: by hash of its edgetl.json, not only by path."""

    path: str
    sha256: str
    backbone: str
    data: DataInfo  # source, fingerprint and split of the run's data: bench can rebuild it

    def here(self) -> Path | None:
        """The run's folder when that very run (its edgetl.json, by hash) is on this
        machine; None elsewhere (a device) or when it changed since the export."""
        run_file = Path(self.path) / RUN_FILE
        if run_file.is_file() and sha256_file(run_file) == self.sha256:
            return run_file.parent
        return None


@dataclass(frozen=True)
class ReferenceInfo:
    """The reference set inside an artifact: test images after resize/crop, labels, FP32 logits."""

    file: str
    n: int
    split: str
    seed: int


@dataclass(frozen=True)
class ParityCheck:
    """A compiled graph against the model it came from, on val (core/measures/parity.py)."""

    n: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    reference_top1: float
    artifact_top1: float
    tolerance: Parity
    passed: bool
    # max |logit diff| per image over its logit range (core/measures/parity.relative_error); absent
    # in manifests written before it was measured.
    max_rel_diff: float | None = field(default=None, metadata={"omit": None})

    def shortfall(self) -> str:
        """What was measured against what the tolerance asks, for a failure message."""
        limits = self.tolerance
        parts = [f"max |logit diff| {self.max_abs_diff:.2e}"]
        if limits.max_abs_diff is not None:
            parts[0] += f" (limit {limits.max_abs_diff:g})"
        if self.max_rel_diff is not None:
            limit = "" if limits.max_rel_diff is None else f" (limit {limits.max_rel_diff:g})"
            parts.append(f"{self.max_rel_diff:.2e} of an image's logit range{limit}")
        parts.append(f"top-1 agreement {self.agreement:.2%} (need {limits.min_agreement:.0%})")
        return ", ".join(parts)


@dataclass(frozen=True)
class ParityRecord(ParityCheck):
    """The artifact's parity, and its other graphs checked on the host (by file name)."""

    host_checks: dict[str, ParityCheck] | None = field(default=None, metadata={"omit": None})


@dataclass(frozen=True, kw_only=True)
class SplitAccuracy(Accuracy):
    """The artifact on a split beside FP32 PyTorch on the same images."""

    fp32_top1: float
    # On test, the one measurement of the artifact against FP32 PyTorch (manifest/4; absent
    # on val and in manifest/3, which kept them in quantization.test).
    drop_pts: float | None = field(default=None, metadata={"omit": None})
    agreement: float | None = field(default=None, metadata={"omit": None})
    # On test: images FP32 got right and the artifact wrong, and the other way round (the
    # drop's evidence, core/measures/evidence.py).
    worse: int | None = field(default=None, metadata={"omit": None})
    better: int | None = field(default=None, metadata={"omit": None})


@dataclass(frozen=True)
class AccuracyRecord:
    """The artifact on val (checks) and test (reported only), and where it was measured."""

    measured_on: str  # the runtime: the target's, or its host proxy
    val: SplitAccuracy
    test: SplitAccuracy
    measured_device: str = ""


@dataclass(frozen=True)
class Attempt:
    """One INT8 candidate the guard measured on val against FP32."""

    name: str
    top1: float
    drop_pts: float
    agreement: float
    max_abs_diff: float
    float_layers: list[str] = field(default_factory=list)
    head_refit: bool = False
    qat: bool = False  # quantize/guard/qat.py's rung
    # Its float layers in FP16 (mixed precision, where the target runs FP16 well).
    float16: bool = False
    # The evidence behind drop_pts (core/measures/evidence.py): val images FP32 got right and this
    # candidate wrong, and the other way round; the drop's one-sided upper bound at
    # `confidence`. Absent in manifests written before they were recorded.
    worse: int | None = field(default=None, metadata={"omit": None})
    better: int | None = field(default=None, metadata={"omit": None})
    drop_upper_pts: float | None = field(default=None, metadata={"omit": None})
    confidence: float | None = field(default=None, metadata={"omit": None})
    # Flips against FP32 on `unlabelled` training images the calibration did not use,
    # measured where val's bound fits the budget, and their bound; the rule's verdict.
    unlabelled: int | None = field(default=None, metadata={"omit": None})
    flips: int | None = field(default=None, metadata={"omit": None})
    flip_upper_pts: float | None = field(default=None, metadata={"omit": None})
    verdict: str | None = field(default=None, metadata={"omit": None})


@dataclass(frozen=True)
class Sensitivity:
    layer: str
    score: float  # share of the INT8 logit error removed by keeping the layer float


@dataclass(frozen=True)
class QuantizedTest:
    """FP32 and the chosen INT8 on the test split: reported, never chosen on."""

    n: int
    fp32_top1: float
    int8_top1: float
    drop_pts: float
    agreement: float


@dataclass(frozen=True)
class QuantizationRecord:
    """The INT8 guard's decision (on val) and what it tried."""

    recipe: Recipe
    calibration: dict[str, Any]  # source, count, seed, files (image keys), time_s
    fp32_top1: float
    int8_top1: float
    drop_pts: float
    budget_pts: float
    n: int
    agreement: float
    max_abs_diff: float
    float_layers: list[str]
    head_refit: bool
    attempts: list[Attempt]
    sensitivities: list[Sensitivity]
    quantize_s: float
    guard_s: float
    # FP32 vs INT8 p50 on the exporting machine and whether INT8 pays off there
    # (quantize/int8.compare_speed); {} on a proxy
    speed_here: dict[str, Any]
    artifact_top1: float
    # The rule the guard decided by (core/measures/evidence.RULES), its confidence and the kept
    # model's upper bound on its drop: the promise. Absent in manifests written before.
    rule: str | None = field(default=None, metadata={"omit": None})
    confidence: float | None = field(default=None, metadata={"omit": None})
    drop_upper_pts: float | None = field(default=None, metadata={"omit": None})
    # "float16" where `float_layers` run in FP16 (the target runs FP16 well and the guard
    # accepted them so: mixed precision); absent: FP32.
    float_precision: str | None = field(default=None, metadata={"omit": None})
    # manifest/3 only: the test numbers, now in the manifest's accuracy.test alone.
    test: QuantizedTest | None = field(default=None, metadata={"omit": None})


@dataclass
class Compiled:
    """What every artifact's manifest opens with: the target it was compiled for and how its
    runtime loads the model files."""

    target: str
    target_profile: str
    backend: BackendName
    device: str
    precision: Precision
    model_files: list[str]
    runtime_options: dict[str, Any]  # the backend's own settings (its options dataclass)


@dataclass
class Manifest(Compiled):
    """manifest.json: an artifact's contract with whoever runs it (no run directory needed)."""

    input_shape: list[int | None]
    run: RunRef
    preprocess: Preprocess
    classes: list[str]
    parity: ParityRecord
    accuracy: AccuracyRecord
    reference: ReferenceInfo
    versions: dict[str, str]
    threads: int
    host_proxy: BackendName | None  # measures accuracy where the runtime is absent
    compile_s: float
    quantization: QuantizationRecord | None = field(default=None, metadata={"omit": None})
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    edgetl: str = __version__
    schema: str = MANIFEST_SCHEMA
    digest: str = ""  # sha256 of the canonical content (core/artifact/integrity.py), set by write()

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> Manifest:
        remedy = "Re-run `edgetl export` with this version."
        source = open_record(data, path, MANIFEST_SCHEMAS, remedy)
        if not isinstance(data.get("files"), dict):
            raise EdgetlError(f"{path}: 'files' is not an object; re-run export")
        manifest = read_fields(cls, data, source)  # a missing key is named first
        manifest.classes = check_classes(manifest.classes, path)
        manifest.digest = check_digest(data, path)
        check_loaded_files(manifest.files, [*manifest.model_files, manifest.reference.file], path)
        return manifest

    @property
    def name(self) -> str:
        return f"{self.target}-{self.precision}"

    def runtime_spec(self, threads: int | None = None) -> RuntimeSpec:
        """How a backend loads this artifact; `threads` overrides the profile's."""
        return RuntimeSpec(
            list(self.model_files),
            self.device,
            dict(self.runtime_options),
            self.threads if threads is None else threads,
        )

    @property
    def model_bytes(self) -> int:
        return sum(int(self.files[name]["bytes"]) for name in self.model_files)

    def write(self, root: Path) -> None:
        """List every file under `root` with its sha256, then write manifest.json atomically
        with its digest."""
        write_manifest(self, root)

    @classmethod
    def read(cls, root: Path, verify: bool = True, trust: Sequence[Any] = ()) -> Manifest:
        """Read an artifact's manifest and check every file against its recorded sha256;
        with `trust` (public keys), also that one of them signed it."""
        path = root / MANIFEST_FILE
        manifest = cls.from_dict(
            read_json(path, f"{MANIFEST_FILE} (is this an edgetl artifact?)"), path
        )
        if trust:
            from edgetl.core.artifact.signing import verify as verify_signature

            verify_signature(root, manifest.digest, trust)
        if verify:
            manifest.verify(root)
        return manifest

    def verify(self, root: Path) -> None:
        self.verify_files(root)
        check_external_data(root, self.files, self.model_files)

    def verify_files(self, root: Path) -> None:
        """Every listed file there with its sha256 (without loading the ONNX graph for its
        external data, as verify() does: what a host checks before sending it to a device,
        which verifies it whole)."""
        verify_listed(root, self.files)


def write_manifest(record: Any, root: Path) -> None:
    """`record` (a manifest: files, digest, to_dict) with every file under `root` listed with
    its sha256, written atomically to root/manifest.json with its digest."""
    record.files = list_files(root)
    record.digest = ""
    # Through JSON once, so the digest is over exactly what a reader will parse.
    record.digest = digest(json.loads(json.dumps(record.to_dict())))
    atomic_write_json(root / MANIFEST_FILE, record.to_dict())


def list_files(root: Path) -> dict[str, dict[str, Any]]:
    """Every file under `root` but the manifest and its signature, with sha256 and size."""
    from edgetl.core.artifact.signing import SIGNATURE_FILE

    return {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in (MANIFEST_FILE, SIGNATURE_FILE)
    }


def verify_listed(root: Path, files: dict[str, dict[str, Any]]) -> None:
    """Every file of `files` there, inside `root`, with its sha256."""
    inside = root.resolve()
    for name, entry in files.items():
        file = root / name
        if not file.is_file():
            raise EdgetlError(f"{file}: listed in the manifest but missing; re-run export")
        if inside not in file.resolve().parents:
            raise EdgetlError(f"{file}: a link out of the artifact directory; re-run export")
        if sha256_file(file) != entry["sha256"]:
            raise EdgetlError(
                f"{file}: sha256 differs from the manifest; the artifact was modified or "
                "damaged, re-run export"
            )
