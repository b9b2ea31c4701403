"""A latency probe: an architecture's compiled model files and how to load them (probe.json),
timed wherever edgetl's device side runs (`edgetl probe-latency DIR...`), e.g. on a lab
device for `edgetl search --on`. No weights matter: only shapes and the runtime."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.registry import get_runtime
from edgetl.backends.tensorrt.record import ENGINE_RECORD
from edgetl.backends.tensorrt.runtime import ENGINE_FILE, TIMING_CACHE
from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_text
from edgetl.core.measures.timing import Latency, interleaved_samples, rounds_for, summarize
from edgetl.core.records import RuntimeSpec

PROBE_FILE = "probe.json"
# What the device writes into a TensorRT probe's folder: not part of what was copied.
BUILD_OUTPUTS = (ENGINE_FILE, ENGINE_RECORD, TIMING_CACHE)


@dataclass(frozen=True)
class TimedArch:
    """An architecture's batch-1 latency (core/measures/timing.Latency, ms), its model files' size
    and what timed it: the target's runtime, or "onnxruntime (proxy for ...)"."""

    latency: Latency
    size_mb: float
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        """search.json's keys for it (p50_ms, p90_ms: what users' scripts read)."""
        return {"p50_ms": round(self.latency.p50, 4), "p90_ms": round(self.latency.p90, 4),
                "size_mb": self.size_mb, "runtime": self.runtime}  # fmt: skip


@dataclass(frozen=True)
class Probe:
    backend: str
    files: list[str]
    size: int  # input pixels
    precision: str = "fp32"
    device: str = "CPU"
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 0
    # A detector artifact's probe: an .npz in the folder (images: letterboxed uint8, sizes:
    # their originals) each detected in turn with the artifact's postprocessing, NMS
    # included: NMS's work depends on each image's detections, so zeros would time too little.
    inputs: str | None = None

    def write(self, folder: Path) -> None:
        atomic_write_text(folder / PROBE_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Probe:
        try:
            return cls(**json.loads((folder / PROBE_FILE).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise EdgetlError(f"{folder}: not a latency probe ({exc})") from exc


def artifact_probe(
    artifact: Path, manifest: Any, size: int, out: Path, inputs: str | None = None
) -> Path:
    """An exported artifact copied whole to `out` as a latency probe: probe.json says how to
    load it, from the manifest's runtime spec (`inputs`: a detector's images, written there
    by the caller)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(artifact, out)
    spec = manifest.runtime_spec()
    Probe(manifest.backend, spec.model_files, size, manifest.precision, spec.device,
          spec.options, spec.threads, inputs).write(out)  # fmt: skip
    return out


def time_probes(folders: list[Path], iterations: int) -> dict[str, dict[str, float]]:
    """Batch-1 p50/p90 of each probe, loaded by its runtime here, timed interleaved."""
    calls: dict[str, Callable[[], object]] = {}
    for folder in folders:
        probe = Probe.read(folder)
        if probe.backend == "tensorrt":
            _engine_for(folder, probe)
        if probe.inputs is not None:
            calls[str(folder)] = _detections(folder, probe.inputs)
            continue
        spec = RuntimeSpec(probe.files, probe.device, probe.options, probe.threads)
        runner = get_runtime(probe.backend).load(folder, spec)
        single = np.zeros((1, 3, probe.size, probe.size), np.float32)
        calls[str(folder)] = _call(runner, single)
    samples = interleaved_samples(calls, iterations, rounds_for(iterations), warmup=10)
    found = {}
    for name, values in samples.items():
        found[name] = summarize(values).to_dict()  # core/measures/timing.Latency, in ms
    return found


def _engine_for(folder: Path, probe: Probe) -> None:
    """A TensorRT probe's engine, built here unless one for this TensorRT is there (an
    engine only runs where it was built); the build is `edgetl build`'s, minus the parity
    check (a probe's weights are random: only its latency counts)."""
    from edgetl.backends.tensorrt.build import write_engine
    from edgetl.backends.tensorrt.runtime import TensorRtRuntime, check_engine_record
    from edgetl.core.events import quiet

    backend = TensorRtRuntime()
    reason = backend.missing()
    if reason is not None:
        raise EdgetlError(f"{folder}: TensorRT cannot run here ({reason})")
    if (folder / ENGINE_FILE).is_file():
        try:
            check_engine_record(folder / ENGINE_RECORD)  # this TensorRT and this device
            return
        except EdgetlError:
            pass  # absent, damaged, another TensorRT or another device: built again here
    options = backend.options(probe.options, str(folder / PROBE_FILE))
    with quiet():
        write_engine(folder, probe.precision, options.workspace_mb, options.dla_core)


def _detections(folder: Path, inputs: str) -> Callable[[], object]:
    """A detector artifact's batch-1 detection of its probe images in turn."""
    from edgetl.backends.detector import in_turn, load_detector

    model = load_detector(folder)  # every checksum verified
    try:
        with np.load(folder / inputs, allow_pickle=False) as data:
            images, sizes = data["images"], data["sizes"]
    except (OSError, ValueError, KeyError) as exc:
        raise EdgetlError(f"{folder / inputs}: not a detector probe's images ({exc})") from exc
    normalized = model.letterbox.normalize(images)
    return in_turn(model.runner, model.manifest, normalized, [tuple(s) for s in sizes.tolist()])


def _call(runner: Any, single: np.ndarray) -> Callable[[], object]:
    return lambda: runner.run(single)
