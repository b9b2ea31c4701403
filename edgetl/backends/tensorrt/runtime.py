"""TensorRT on NVIDIA GPUs and Jetson modules, device side: an engine `edgetl build` made
here, checked against the record of where it was built, run with Polygraphy's runner.

An engine is tied to the GPU and the TensorRT version that built it, so export writes a
bundle on any host (compiler.py) and the device builds `model.engine` from it (build.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.base import PlacedOps, Runtime
from edgetl.backends.tensorrt.options import TensorRtOptions
from edgetl.backends.tensorrt.record import ENGINE_RECORD, EngineRecord
from edgetl.core.errors import EdgetlError
from edgetl.core.records import RuntimeSpec

CALIBRATION_CACHE = "calibration.cache"
DEVICE_DOC = "DEVICE.md"
ENGINE_FILE = "model.engine"
TIMING_CACHE = "timing.cache"


class TensorRtRuntime(Runtime):
    name = "tensorrt"
    module = "tensorrt"
    Options = TensorRtOptions

    def runtime_version(self) -> str:
        if not tensorrt_available():
            return "absent"
        import tensorrt

        return str(tensorrt.__version__)

    def available(self) -> bool:
        """TensorRT usable here: its module imports *and* a CUDA device answers (a host with
        the bindings and no GPU measures on the host proxy)."""
        return self.missing() is None

    def missing(self) -> str | None:
        """What keeps TensorRT from running here, in words; None when it can."""
        if not super().available():
            return "the tensorrt module is not installed"
        try:
            import tensorrt
        except (ImportError, OSError) as exc:
            return f"the tensorrt module does not import ({exc})"
        from edgetl.backends.tensorrt.requirements import POLYGRAPHY, numpy_ok

        if importlib.util.find_spec("polygraphy") is None:
            return (
                f"Polygraphy (which runs the engine) is not installed: pip install '{POLYGRAPHY}'"
            )
        version = str(tensorrt.__version__)
        if not numpy_ok(version, np.__version__):
            return (
                f"TensorRT {version}'s bindings read NumPy {np.__version__}'s arrays wrongly "
                "(they predate NumPy 2): pip install 'numpy<2'"
            )
        from edgetl.backends.tensorrt.cuda_device import CudaDevice, first_device

        device = first_device()
        return None if isinstance(device, CudaDevice) else f"TensorRT imports, but {device}"

    def check_device(self, device: str) -> None:
        reason = self.missing()
        if reason is not None:
            raise EdgetlError(
                f"TensorRT cannot run here: {reason}; export writes a bundle for the device, "
                "where `edgetl build` makes the engine (see the bundle's DEVICE.md)"
            )

    def load(self, model_dir: Path, spec: RuntimeSpec) -> TrtRunner:
        if not tensorrt_available():
            raise EdgetlError(f"{model_dir}: TensorRT is not installed here")
        engine = model_dir / ENGINE_FILE
        if not engine.is_file():
            raise EdgetlError(
                f"{model_dir}: no {ENGINE_FILE} yet; build it on this device with "
                f"`edgetl build {model_dir}`"
            )
        record = check_engine_record(model_dir / ENGINE_RECORD)
        data = engine.read_bytes()
        # The engine is built on the device, so the manifest cannot list it: its record does.
        if hashlib.sha256(data).hexdigest() != record.engine_sha256:
            raise EdgetlError(
                f"{engine}: its sha256 differs from {ENGINE_RECORD}; the engine was replaced or "
                f"damaged, rebuild it with `edgetl build {model_dir}`"
            )
        # The device's gpu was checked against this machine's just now.
        return TrtRunner(data, record.dla_core, record.max_batch, record.device.gpu)

    placement_needs_runtime = False  # the engine record the device's build wrote

    def op_placement(self, model_dir: Path, spec: RuntimeSpec) -> list[PlacedOps]:
        """The engine's layers on DLA and GPU as `edgetl build` read them with TensorRT's
        engine inspector on the device (its engine record): per layer type and precision,
        or (an older record) the counts with the layers that fell back to the GPU by name."""
        path = model_dir / ENGINE_RECORD
        if not path.is_file():
            raise EdgetlError(
                f"{model_dir}: no engine here; TensorRT places layers when it builds: run "
                f"`edgetl build {model_dir}` on the device (or `--on DEVICE`), then inspect it"
            )
        record = EngineRecord.parse(path.read_text(errors="replace"), str(path))
        kind = record.precision
        if record.layer_types:  # per layer type, as TensorRT's engine inspector read it
            rows = []
            for key, count in sorted(record.layer_types.items()):
                where, rest = key.split(" ", 1)
                layer, _, precision = rest.rpartition(" ")
                rows.append(PlacedOps(layer, where, precision, count))
            return rows
        rows = [PlacedOps("engine layers", "DLA", kind, record.dla_layers or 0),
                PlacedOps("engine layers", "GPU", kind, record.gpu_layers or 0)]  # fmt: skip
        rows += [PlacedOps(f"fallback: {name}", "GPU", kind, 1)
                 for name in record.gpu_fallback_layers]  # fmt: skip
        return rows


class TrtRunner:
    """An engine run with Polygraphy's runner (its own CUDA buffer handling).

    Polygraphy's runner owns one execution context and one set of device buffers: calls
    from several threads are serialized by a lock, and each output is copied out of the
    buffer Polygraphy reuses for the next call (its `infer` docstring says to copy).
    """

    def __init__(
        self,
        engine: bytes,
        dla_core: int = -1,
        max_batch: int | None = None,
        gpu: str | None = None,
    ):
        """`dla_core`, `max_batch` (a dynamic engine's optimization profile) and `gpu`
        (CUDA's name for the device) as the engine record gives them."""
        import tensorrt as trt
        from polygraphy.backend.trt import EngineFromBytes
        from polygraphy.backend.trt import TrtRunner as PolygraphyRunner

        # An engine built for a DLA core runs on the core its runtime names (default 0):
        # one built for core 1 must be loaded by a runtime set to core 1.
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if dla_core >= 0:
            runtime.DLA_core = dla_core
        self._runner: Any = PolygraphyRunner(EngineFromBytes(engine, runtime=runtime))
        self._runner.activate()
        # use_numpy_dtypes=False: the default (NumPy dtypes) is deprecated and warns.
        meta = self._runner.get_input_metadata(use_numpy_dtypes=False)
        self.input_name = next(iter(meta.keys()))
        batch = meta[self.input_name].shape[0]
        self.batch_size = batch if isinstance(batch, int) and batch > 0 else None
        self.max_batch = max_batch
        self.size_bytes = len(engine)  # what runs: the engine, not the bundle's ONNX
        self.gpu = gpu
        self._lock = threading.Lock()

    def run(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            outputs = self._runner.infer({self.input_name: np.ascontiguousarray(images)})
            return np.array(next(iter(outputs.values())), copy=True)

    def named(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name (a detector's boxes and scores), each copied out."""
        with self._lock:
            outputs = self._runner.infer({self.input_name: np.ascontiguousarray(images)})
            return {name: np.array(value, copy=True) for name, value in outputs.items()}

    def close(self) -> None:
        """Polygraphy's runner freed (its buffers and context: memory an 8 GB Orin Nano
        needs back); otherwise it warns at exit that it was never deactivated."""
        with self._lock:
            if self._runner.is_active:
                self._runner.deactivate()


def tensorrt_available() -> bool:
    """TensorRT usable here: the real module (not tensorrt-stubs' .pyi files) and a GPU."""
    return TensorRtRuntime().available()


def encode_version(version: str) -> int:
    """TensorRT's version integer: major*10000 + minor*100 + patch ("10.3.0" -> 100300), as
    calibration caches begin (JetPack 6's: TRT-100300-EntropyCalibration2). TensorRT skips a
    cache of another version without an error, then calibrates on whatever data it gets."""
    parts = [int(p) for p in version.split(".")[:3] if p.isdigit()]
    major, minor, patch = (parts + [0, 0, 0])[:3]
    return major * 10000 + minor * 100 + patch


def check_engine_record(path: Path) -> EngineRecord:
    """An engine only runs where it was built: same TensorRT version and device, else exit 2.

    The device is what CUDA's driver and (on a Jetson) the device tree report; a machine
    that cannot be identified is refused too, never waved through."""
    import tensorrt

    from edgetl.backends.tensorrt.cuda_device import identity

    if not path.is_file():
        raise EdgetlError(f"{path}: missing; rebuild the engine with `edgetl build`")
    record = EngineRecord.parse(path.read_text(errors="replace"), str(path))
    here = {"tensorrt": str(tensorrt.__version__), **identity()}
    if here["gpu"] is None and here["module"] is None:
        raise EdgetlError(
            f"{path.parent}: cannot tell which device this is (no CUDA device answers), so the "
            "engine cannot be checked against it; run on the device it was built on"
        )
    stale = record.stale(here)
    if stale is not None:
        raise EdgetlError(
            f"{path.parent / ENGINE_FILE} was {stale}; rebuild with `edgetl build {path.parent}`"
        )
    return record
