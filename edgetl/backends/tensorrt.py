"""TensorRT on NVIDIA GPUs and Jetson modules: the artifact is a bundle, built on the device.

An engine is tied to the GPU and the TensorRT version that built it, so export writes a
bundle on any host (the Q/DQ or FP32 ONNX, a calibration cache for TensorRT 10's implicit
INT8, DEVICE.md) and `edgetl build` turns it into `model.engine` on the device. On a host
without TensorRT, accuracy is measured by the profile's host proxy (ONNX Runtime on the same
Q/DQ graph).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.artifacts import atomic_write_text
from edgetl.backends.base import Backend
from edgetl.errors import CheckFailed, EdgetlError
from edgetl.formats import RuntimeSpec

if TYPE_CHECKING:
    import onnx

    from edgetl.targets import TargetProfile

MODEL_FILE = "model.onnx"
FP32_FILE = "model.fp32.onnx"
CALIBRATION_CACHE = "calibration.cache"
DEVICE_DOC = "DEVICE.md"
ENGINE_FILE = "model.engine"
ENGINE_RECORD = "engine.json"
TIMING_CACHE = "timing.cache"


class TensorRtBackend(Backend):
    name = "tensorrt"
    module = "tensorrt"

    def runtime_version(self) -> str:
        if not tensorrt_available():
            return "absent"
        import tensorrt

        return str(tensorrt.__version__)

    def check_device(self, device: str) -> None:
        if not tensorrt_available():
            raise EdgetlError(
                "TensorRT is not installed here; export writes a bundle for the device, "
                "where `edgetl build` makes the engine (see the bundle's DEVICE.md)"
            )

    def compile(
        self,
        onnx_path: Path,
        out_dir: Path,
        profile: TargetProfile,
        precision: str,
        fp32_onnx: Path | None = None,
    ) -> list[str]:
        import onnx

        from edgetl.backends.tensorrt_cache import activation_scales, write_cache
        from edgetl.backends.tensorrt_rules import violations

        model = onnx.load(str(onnx_path))
        if precision == "int8":
            problems = violations(model)
            if problems:
                raise CheckFailed(
                    f"the INT8 model breaks TensorRT's Q/DQ rules in {len(problems)} places; "
                    "no bundle written:\n  " + "\n  ".join(problems)
                )
            if fp32_onnx is not None:
                shutil.copyfile(fp32_onnx, out_dir / FP32_FILE)
                version = int(profile.options.get("tensorrt_versions", [10])[0]) * 1000
                cache = write_cache(activation_scales(model), version)
                atomic_write_text(out_dir / CALIBRATION_CACHE, cache)
        shutil.copyfile(onnx_path, out_dir / MODEL_FILE)
        atomic_write_text(
            out_dir / DEVICE_DOC, device_doc(profile, precision, fp32_onnx is not None)
        )
        return [MODEL_FILE]

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
        if hashlib.sha256(data).hexdigest() != record.get("engine_sha256"):
            raise EdgetlError(
                f"{engine}: its sha256 differs from {ENGINE_RECORD}; the engine was replaced or "
                f"damaged, rebuild it with `edgetl build {model_dir}`"
            )
        return TrtRunner(data)

    def load_onnx(self, model: onnx.ModelProto, profile: TargetProfile) -> TrtRunner:
        raise EdgetlError(
            f"target {profile.name}: candidates are measured by the host proxy; set "
            "host_proxy in the profile"
        )

    def rewrite_int8(self, model: onnx.ModelProto) -> onnx.ModelProto:
        from edgetl.backends.tensorrt_rules import to_tensorrt

        return to_tensorrt(model)


class TrtRunner:
    """An engine run with Polygraphy's runner (its own CUDA buffer handling).

    Polygraphy's runner owns one execution context and one set of device buffers: calls
    from several threads are serialized by a lock, and each output is copied out of the
    buffer Polygraphy reuses for the next call (its `infer` docstring says to copy).
    """

    def __init__(self, engine: bytes):
        from polygraphy.backend.trt import EngineFromBytes
        from polygraphy.backend.trt import TrtRunner as PolygraphyRunner

        self._runner: Any = PolygraphyRunner(EngineFromBytes(engine))
        self._runner.activate()
        meta = self._runner.get_input_metadata()
        self.input_name = next(iter(meta.keys()))
        batch = meta[self.input_name].shape[0]
        self.batch_size = batch if isinstance(batch, int) and batch > 0 else None
        self._lock = threading.Lock()

    def run(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            outputs = self._runner.infer({self.input_name: np.ascontiguousarray(images)})
            return np.array(next(iter(outputs.values())), copy=True)


def tensorrt_available() -> bool:
    """The real TensorRT, not the directory of .pyi files tensorrt-stubs installs."""
    return TensorRtBackend().available()


def check_engine_record(path: Path) -> dict[str, Any]:
    """An engine only runs where it was built: same TensorRT version and GPU, else exit 2."""
    import tensorrt

    from edgetl.bench.env import gpu_name

    if not path.is_file():
        raise EdgetlError(f"{path}: missing; rebuild the engine with `edgetl build`")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgetlError(f"{path}: not valid JSON ({exc}); rebuild with `edgetl build`") from exc
    if not isinstance(record, dict):
        raise EdgetlError(f"{path}: not an engine record; rebuild with `edgetl build`")
    here = {"tensorrt": str(tensorrt.__version__), "gpu": gpu_name()}
    for key, value in here.items():
        if record.get(key) != value:
            raise EdgetlError(
                f"{path.parent / ENGINE_FILE} was built with {key} {record.get(key)!r}, this "
                f"machine has {value!r}; rebuild with `edgetl build {path.parent}`"
            )
    return record


def device_doc(profile: TargetProfile, precision: str, calibration_cache: bool) -> str:
    """DEVICE.md: what to do with this bundle on the device."""
    workspace = int(profile.options.get("workspace_mb", 1024))
    dla = int(profile.options.get("dla_core", -1))
    versions = ", ".join(f"{v}.x" for v in profile.options.get("tensorrt_versions", []))
    base = f"trtexec --onnx={MODEL_FILE} --memPoolSize=workspace:{workspace}M"
    base += f" --useDLACore={dla} --allowGPUFallback" if dla >= 0 else ""
    base += f" --saveEngine={ENGINE_FILE}"
    if precision == "int8":
        trtexec = f"    {base} --stronglyTyped     # TensorRT 11\n    {base} --int8 --fp16    # 10"
    else:
        trtexec = f"    {base} --fp16"
    cache = ""
    if calibration_cache:
        cache = (
            "\nTensorRT 10 with implicit INT8 calibration instead (deprecated since 10.1, "
            f"removed in 11): `{FP32_FILE}` with `{CALIBRATION_CACHE}`, which holds the same "
            f"ranges:\n\n    trtexec --onnx={FP32_FILE} --int8 --calib={CALIBRATION_CACHE} "
            f"--saveEngine={ENGINE_FILE}\n"
        )
    dla_option = f" --dla-core {dla}" if dla >= 0 else ""
    return f"""# {profile.name} bundle ({precision})

{profile.description}. For TensorRT {versions}.

1. Install edgetl's device side (JetPack brings TensorRT and CUDA; no torch is needed):

       pip install --no-deps edgetl && pip install numpy pillow click rich onnx polygraphy

2. Build the engine here, on the device. `edgetl build` checks every file's sha256, builds
   `{ENGINE_FILE}` with a timing cache beside it, records the TensorRT version and GPU, then
   runs the reference set through the engine and fails outside the profile's tolerance:

       edgetl build .{dla_option}

3. Measure it (accuracy on the reference set in this bundle, latency on this device):

       edgetl bench .

Without edgetl, the same engine with trtexec:

{trtexec}
{cache}"""
