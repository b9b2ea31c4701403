"""Typed files on disk: the run (edgetl.json), the artifact manifest and the bench report.

Each file has one dataclass with `to_dict` / `from_dict` and a schema version. Reading a
file from another version, or one that lacks a key, is an EdgetlError (exit 2) naming the
file, the key and the edgetl version that wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgetl import __version__
from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_json, read_json, sha256_file
from edgetl.core.integrity import check_digest, check_external_data, check_loaded_files, digest
from edgetl.core.outputs import check_label
from edgetl.core.preprocess import Preprocess

if TYPE_CHECKING:
    from edgetl.core.dataset import Splits

RUN_FILE = "edgetl.json"
RUN_SCHEMA = "edgetl.run/3"  # 3: sha256 of the weight files
MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "edgetl.manifest/3"  # 3: the manifest's own digest
BENCH_SCHEMA = "edgetl.bench/1"


class Fields:
    """A dict read from `path`, whose missing keys are reported with the file and its writer."""

    def __init__(self, data: Any, path: Path | str, writer: str, prefix: str = ""):
        if not isinstance(data, dict):
            raise EdgetlError(f"{path}: {prefix or 'the file'} is not a JSON object")
        self.data, self.path, self.writer, self.prefix = data, path, writer, prefix

    def __getitem__(self, key: str) -> Any:
        if key not in self.data:
            raise EdgetlError(
                f"{self.path}: missing key {self.prefix + key!r} (written by {self.writer}); "
                f"re-create it with this edgetl ({__version__})"
            )
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def sub(self, key: str) -> Fields:
        return Fields(self[key], self.path, self.writer, f"{self.prefix}{key}.")


def _open(data: Any, path: Path | str, schema: str, remedy: str) -> Fields:
    """Check the schema first: a file from another version is named with its writer."""
    if not isinstance(data, dict):
        raise EdgetlError(f"{path}: not a JSON object; the file is damaged")
    writer = f"edgetl {data.get('edgetl', 'of unknown version')}, schema {data.get('schema')}"
    if data.get("schema") != schema:
        raise EdgetlError(
            f"{path}: written by {writer}; this edgetl ({__version__}) reads {schema}. {remedy}"
        )
    return Fields(data, path, writer)


@dataclass(frozen=True)
class RuntimeSpec:
    """How a backend loads an artifact's model files: from its manifest, or a profile at export."""

    model_files: list[str]
    device: str = "CPU"
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 0


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    timm_name: str
    num_features: int
    weights_source: str
    weights_sha256: str

    @classmethod
    def from_fields(cls, f: Fields) -> BackboneInfo:
        return cls(
            str(f["name"]),
            str(f["timm_name"]),
            int(f["num_features"]),
            str(f["weights_source"]),
            str(f["weights_sha256"]),
        )


@dataclass(frozen=True)
class HeadInfo:
    kind: str  # linear | mlp
    hidden: int

    @classmethod
    def from_fields(cls, f: Fields) -> HeadInfo:
        return cls(str(f["kind"]), int(f["hidden"]))


@dataclass(frozen=True)
class TrainInfo:
    """How the head was trained: also what the INT8 guard's head refit reuses."""

    epochs: int
    lr: float
    batch_size: int
    seed: int
    patience: int
    device: str = "cpu"
    amp: bool = False
    unfreeze: int = 0

    @classmethod
    def from_fields(cls, f: Fields) -> TrainInfo:
        return cls(
            int(f["epochs"]),
            float(f["lr"]),
            int(f["batch_size"]),
            int(f["seed"]),
            int(f["patience"]),
            str(f["device"]),
            bool(f["amp"]),
            int(f["unfreeze"]),
        )


@dataclass(frozen=True)
class DataInfo:
    """Where the data came from and exactly which images each role got."""

    source: str
    strategy: str
    val_fraction: float
    test_fraction: float
    seed: int
    fingerprint: str
    sizes: dict[str, int]  # role -> images
    key_sha256: dict[str, str]  # role -> sha256 of its image keys, in order

    @classmethod
    def from_splits(cls, splits: Splits) -> DataInfo:
        roles = {"train": splits.train, "val": splits.val, "test": splits.test}
        return cls(
            source=splits.source,
            strategy=splits.strategy,
            val_fraction=splits.val_fraction,
            test_fraction=splits.test_fraction,
            seed=splits.seed,
            fingerprint=splits.fingerprint,
            sizes={role: len(images) for role, images in roles.items()},
            key_sha256={role: images.key_hash() for role, images in roles.items()},
        )

    @classmethod
    def from_fields(cls, f: Fields) -> DataInfo:
        return cls(
            str(f["source"]),
            str(f["strategy"]),
            float(f["val_fraction"]),
            float(f["test_fraction"]),
            int(f["seed"]),
            str(f["fingerprint"]),
            {str(k): int(v) for k, v in f["sizes"].items()},
            {str(k): str(v) for k, v in f["key_sha256"].items()},
        )


@dataclass
class RunInfo:
    """edgetl.json: everything a later stage needs to know about a fine-tuning run."""

    backbone: BackboneInfo
    head: HeadInfo
    classes: list[str]
    preprocess: Preprocess
    data: DataInfo
    train: TrainInfo
    metrics: dict[str, Any]
    versions: dict[str, str]
    command: list[str]
    # file -> sha256 of the run's weights: a head or backbone swapped in from another run
    # (same shapes, other classes' weights) is refused instead of exported silently.
    weights: dict[str, str] = field(default_factory=dict)
    edgetl: str = __version__
    schema: str = RUN_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> RunInfo:
        f = _open(data, path, RUN_SCHEMA, "Re-run `edgetl finetune` with this version.")
        return cls(
            backbone=BackboneInfo.from_fields(f.sub("backbone")),
            head=HeadInfo.from_fields(f.sub("head")),
            classes=_classes(f),
            preprocess=_preprocess(f.sub("preprocess")),
            data=DataInfo.from_fields(f.sub("data")),
            train=TrainInfo.from_fields(f.sub("train")),
            metrics=dict(f["metrics"]),
            versions=dict(f["versions"]),
            command=list(f["command"]),
            weights={str(k): str(v) for k, v in f["weights"].items()},
            edgetl=str(f["edgetl"]),
        )

    def write(self, run_dir: Path) -> None:
        atomic_write_json(run_dir / RUN_FILE, self.to_dict())

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        path = run_dir / RUN_FILE
        return cls.from_dict(read_json(path, f"{RUN_FILE} (a run from `edgetl finetune`)"), path)


def _classes(f: Fields) -> list[str]:
    """Class names as labels, never paths; each once."""
    names = f["classes"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EdgetlError(f"{f.path}: classes must be a list of names; re-create the file")
    if len(set(names)) != len(names):
        raise EdgetlError(f"{f.path}: classes repeat a name; re-create the file")
    return [check_label(name, "class", str(f.path)) for name in names]


def _preprocess(f: Fields) -> Preprocess:
    for key in ("size", "mean", "std", "interpolation", "crop_pct"):
        f[key]  # noqa: B018 - names the missing key
    return Preprocess.from_dict(f.data)


@dataclass(frozen=True)
class RunRef:
    """The run an artifact came from: by hash of its edgetl.json, not only by path."""

    path: str
    sha256: str
    backbone: str
    data: DataInfo  # source, fingerprint and split of the run's data: bench can rebuild it

    @classmethod
    def from_fields(cls, f: Fields) -> RunRef:
        return cls(
            str(f["path"]),
            str(f["sha256"]),
            str(f["backbone"]),
            DataInfo.from_fields(f.sub("data")),
        )


@dataclass(frozen=True)
class ReferenceInfo:
    """The reference set inside an artifact: test images after resize/crop, labels, FP32 logits."""

    file: str
    n: int
    split: str
    seed: int

    @classmethod
    def from_fields(cls, f: Fields) -> ReferenceInfo:
        return cls(str(f["file"]), int(f["n"]), str(f["split"]), int(f["seed"]))


@dataclass
class Manifest:
    """manifest.json: an artifact's contract with whoever runs it (no run directory needed)."""

    target: str
    target_profile: str
    backend: str
    device: str
    precision: str
    model_files: list[str]
    runtime_options: dict[str, Any]
    input_shape: list[int | None]
    run: RunRef
    preprocess: Preprocess
    classes: list[str]
    parity: dict[str, Any]
    accuracy: dict[str, Any]  # {"measured_on": backend, "val": {...}, "test": {...}}
    reference: ReferenceInfo
    versions: dict[str, str]
    threads: int = 0
    host_proxy: str | None = None  # the backend that measures accuracy where the runtime is absent
    compile_s: float = 0.0
    quantization: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    edgetl: str = __version__
    schema: str = MANIFEST_SCHEMA
    digest: str = ""  # sha256 of the canonical content (edgetl/core/integrity.py), set by write()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.quantization is None:
            del data["quantization"]
        return data

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> Manifest:
        f = _open(data, path, MANIFEST_SCHEMA, "Re-run `edgetl export` with this version.")
        manifest = cls._from_fields(f)  # a missing key is named first
        manifest.digest = check_digest(f.data, path)
        check_loaded_files(manifest.files, [*manifest.model_files, manifest.reference.file], path)
        return manifest

    @classmethod
    def _from_fields(cls, f: Fields) -> Manifest:
        if not isinstance(f["files"], dict):
            raise EdgetlError(f"{f.path}: 'files' is not an object; re-run export")
        return cls(
            target=str(f["target"]),
            target_profile=str(f["target_profile"]),
            backend=str(f["backend"]),
            device=str(f["device"]),
            precision=str(f["precision"]),
            model_files=[str(n) for n in f["model_files"]],
            runtime_options=dict(f["runtime_options"]),
            input_shape=list(f["input_shape"]),
            run=RunRef.from_fields(f.sub("run")),
            preprocess=_preprocess(f.sub("preprocess")),
            classes=_classes(f),
            parity=dict(f["parity"]),
            accuracy=dict(f["accuracy"]),
            reference=ReferenceInfo.from_fields(f.sub("reference")),
            versions=dict(f["versions"]),
            threads=int(f["threads"]),
            host_proxy=f.get("host_proxy"),
            compile_s=float(f["compile_s"]),
            quantization=f.get("quantization"),
            files={str(k): dict(v) for k, v in f["files"].items()},
            edgetl=str(f["edgetl"]),
        )

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
        from edgetl.core.signing import SIGNATURE_FILE

        self.files = {
            p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix() not in (MANIFEST_FILE, SIGNATURE_FILE)
        }
        self.digest = ""
        # Through JSON once, so the digest is over exactly what a reader will parse.
        self.digest = digest(json.loads(json.dumps(self.to_dict())))
        atomic_write_json(root / MANIFEST_FILE, self.to_dict())

    @classmethod
    def read(cls, root: Path, verify: bool = True, trust: Sequence[Any] = ()) -> Manifest:
        """Read an artifact's manifest and check every file against its recorded sha256;
        with `trust` (public keys), also that one of them signed it."""
        path = root / MANIFEST_FILE
        manifest = cls.from_dict(
            read_json(path, f"{MANIFEST_FILE} (is this an edgetl artifact?)"), path
        )
        if trust:
            from edgetl.core.signing import verify as verify_signature

            verify_signature(root, manifest.digest, trust)
        if verify:
            manifest.verify(root)
        return manifest

    def verify(self, root: Path) -> None:
        inside = root.resolve()
        for name, entry in self.files.items():
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
        check_external_data(root, self.files)


@dataclass
class BenchResult:
    """One artifact's numbers in an edgetl.bench/1 report."""

    artifact: str
    name: str
    target: str
    backend: str
    precision: str
    accuracy: dict[str, Any]  # top1, top5, n, agreement, per_class, confusion, absent_classes
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
    checks: dict[str, Any] = field(default_factory=dict)  # baseline comparison and verdicts
    # The artifact's own runtime when `backend` is a host proxy standing in for it (e.g.
    # ONNX Runtime for a TensorRT bundle on a host): its latency is not the device's.
    proxy_for: str = ""

    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "notes", "rounds", "cv", "batches", "rss_before_load_mb", "checks", "proxy_for",
    )  # fmt: skip

    @classmethod
    def from_fields(cls, f: Fields) -> BenchResult:
        names = [item.name for item in fields(cls) if item.name not in cls.OPTIONAL]
        extra = {n: f.get(n) for n in cls.OPTIONAL if f.get(n) is not None}
        values = {**{n: f[n] for n in names}, **extra}
        kinds = {item.name: str(item.type) for item in fields(cls)}
        for name, value in values.items():
            _check_type(value, kinds[name], f"{f.path}: {f.prefix}{name}")
        accuracy = Fields(values["accuracy"], f.path, f.writer, f"{f.prefix}accuracy.")
        _check_type(accuracy["top1"], "float", f"{f.path}: {accuracy.prefix}top1")
        _check_type(accuracy["n"], "int", f"{f.path}: {accuracy.prefix}n")
        return cls(**values)

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
        if not 0.0 <= float(self.accuracy["top1"]) <= 1.0:
            raise EdgetlError(f"{path}: results[{index}].accuracy.top1 is not between 0 and 1")
        return samples


MIN_BASELINE_SAMPLES = 10  # fewer make the bootstrap interval of a median meaningless
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "list[float]": (list,),
    "list[str]": (list,),
}


def _check_type(value: Any, kind: str, where: str) -> None:
    """A value read from a report has the type its field declares (bool is not a number)."""
    items: Any = value  # kept untyped: isinstance below would narrow `value` to object
    expected = _TYPES.get(kind, (dict,) if kind.startswith("dict") else (object,))
    if isinstance(value, bool) and kind in ("int", "float"):
        expected = ()
    if not isinstance(value, expected):
        raise EdgetlError(
            f"{where}: expected {kind}, found {type(value).__name__} {str(value)[:40]!r}; the "
            "report is damaged or not from edgetl bench"
        )
    if kind == "list[float]" and not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in items
    ):
        raise EdgetlError(f"{where}: expected a list of numbers; the report is damaged")


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
        return asdict(self)

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> BenchReport:
        data = read_json(path, "bench report (from `edgetl bench --json`)")
        f = _open(data, path, BENCH_SCHEMA, "Re-run `edgetl bench --json` with this version.")
        results = [
            BenchResult.from_fields(Fields(item, path, f.writer, f"results[{i}]."))
            for i, item in enumerate(f["results"])
        ]
        return cls(str(f["created"]), str(f["data"]), list(f["command"]), results, str(f["edgetl"]))
