"""TensorRT on NVIDIA GPUs and Jetson modules: the artifact is a bundle, built on the device.

An engine is tied to the GPU and the TensorRT version that built it, so export writes a
bundle on any host (the Q/DQ or FP32 ONNX, a calibration cache for TensorRT 10's implicit
INT8, DEVICE.md) and `edgetl build` turns it into `model.engine` on the device. On a host
without TensorRT, accuracy is measured by the profile's host proxy (ONNX Runtime on the same
Q/DQ graph).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.backends.base import Backend, CompileInput
from edgetl.backends.tensorrt.options import TensorRtOptions
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.files import atomic_write_text
from edgetl.core.records import RuntimeSpec

if TYPE_CHECKING:
    import onnx

    from edgetl.core.targets import TargetProfile

from edgetl.backends.tensorrt.engine import FP16_FILE, FP32_FILE, MODEL_FILE, carried, route

CALIBRATION_CACHE = "calibration.cache"
DEVICE_DOC = "DEVICE.md"
ENGINE_FILE = "model.engine"
ENGINE_RECORD = "engine.json"
TIMING_CACHE = "timing.cache"


class TensorRtBackend(Backend):
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

    def host_checks(
        self, out_dir: Path, precision: str, profile: TargetProfile
    ) -> list[tuple[str, Path, str]]:
        """Extra graphs a device of the profile builds from, checked on the host proxy at
        export: (what, file, the profile's parity key). Only the routes of the TensorRT
        majors the bundle is for: an Orin on 10.3 never builds from the FP16-typed graph."""
        options: TensorRtOptions = self.options(profile.options, profile.source)
        users = carried(options.majors, precision, options.dla_core >= 0).get(FP16_FILE)
        if users is None:
            return []
        releases = [v for v in options.tensorrt_versions if int(v.split(".")[0]) in users]
        what = f"FP16-typed graph for TensorRT {', '.join(releases)}"
        return [(what, out_dir / FP16_FILE, "fp16_graph")]

    def compile(self, graph: CompileInput, out_dir: Path, profile: TargetProfile) -> list[str]:
        import onnx

        from edgetl.backends.tensorrt.calibration_cache import activation_scales, write_cache
        from edgetl.backends.tensorrt.rules import advisories, violations

        options: TensorRtOptions = self.options(profile.options, profile.source)
        precision = graph.precision
        model = onnx.load(str(graph.onnx))
        files = carried(options.majors, precision, options.dla_core >= 0)
        if FP16_FILE in files:
            # TensorRT 11 has no FP16 builder flag: precision comes from the graph's types.
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(model, keep_io_types=True), str(out_dir / FP16_FILE))
        if precision == "int8":
            for advice in advisories(model):
                logging.getLogger("edgetl").warning("TensorRT INT8: %s", advice)
            problems = violations(model)
            if problems:
                raise CheckFailed(
                    f"the INT8 model breaks TensorRT's Q/DQ rules in {len(problems)} places; "
                    "no bundle written:\n  " + "\n  ".join(problems)
                )
            if graph.fp32_onnx is not None:
                shutil.copyfile(graph.fp32_onnx, out_dir / FP32_FILE)
                cache = write_cache(activation_scales(model), implicit_int8_version(options))
                atomic_write_text(out_dir / CALIBRATION_CACHE, cache)
        shutil.copyfile(graph.onnx, out_dir / MODEL_FILE)
        from edgetl.core.selfwheel import build_wheel

        build_wheel(out_dir)  # the device installs the very edgetl that made the bundle
        atomic_write_text(out_dir / DEVICE_DOC, device_doc(profile, options, precision))
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
        dla_core = record.get("dla_core", -1)
        dynamic = record.get("dynamic_batch")
        gpu = record["device"].get("gpu")  # checked against this machine's just now
        return TrtRunner(
            data,
            dla_core if isinstance(dla_core, int) else -1,
            dynamic.get("max") if isinstance(dynamic, dict) else None,
            gpu if isinstance(gpu, str) else None,
        )

    def load_onnx(self, model: onnx.ModelProto, profile: TargetProfile) -> TrtRunner:
        raise EdgetlError(
            f"target {profile.name}: candidates are measured by the host proxy; set "
            "host_proxy in the profile"
        )

    def rewrite_int8(self, model: onnx.ModelProto) -> onnx.ModelProto:
        from edgetl.backends.tensorrt.rules import to_tensorrt

        return to_tensorrt(model)


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

    def close(self) -> None:
        """Polygraphy's runner freed (its buffers and context: memory an 8 GB Orin Nano
        needs back); otherwise it warns at exit that it was never deactivated."""
        with self._lock:
            if self._runner.is_active:
                self._runner.deactivate()


def tensorrt_available() -> bool:
    """TensorRT usable here: the real module (not tensorrt-stubs' .pyi files) and a GPU."""
    return TensorRtBackend().available()


def encode_version(version: str) -> int:
    """TensorRT's version integer: major*10000 + minor*100 + patch ("10.3.0" -> 100300), as
    calibration caches begin (JetPack 6's: TRT-100300-EntropyCalibration2). TensorRT skips a
    cache of another version without an error, then calibrates on whatever data it gets."""
    parts = [int(p) for p in version.split(".")[:3] if p.isdigit()]
    major, minor, patch = (parts + [0, 0, 0])[:3]
    return major * 10000 + minor * 100 + patch


def implicit_int8_version(options: TensorRtOptions) -> int:
    """The TensorRT 10 release a bundle's calibration cache is written for: the first 10.x
    the profile names (`edgetl build` rewrites it for the version it finds)."""
    tens = [v for v in options.tensorrt_versions if v.split(".")[0] == "10"]
    return encode_version(tens[0] if tens else "10.0.0")


def check_engine_record(path: Path) -> dict[str, Any]:
    """An engine only runs where it was built: same TensorRT version and device, else exit 2.

    The device is what CUDA's driver and (on a Jetson) the device tree report; a machine
    that cannot be identified is refused too, never waved through."""
    import tensorrt

    from edgetl.backends.tensorrt.cuda_device import identity

    if not path.is_file():
        raise EdgetlError(f"{path}: missing; rebuild the engine with `edgetl build`")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgetlError(f"{path}: not valid JSON ({exc}); rebuild with `edgetl build`") from exc
    if not isinstance(record, dict) or not isinstance(record.get("device"), dict):
        raise EdgetlError(f"{path}: not an engine record; rebuild with `edgetl build`")
    here = {"tensorrt": str(tensorrt.__version__), **identity()}
    if here["gpu"] is None and here["module"] is None:
        raise EdgetlError(
            f"{path.parent}: cannot tell which device this is (no CUDA device answers), so the "
            "engine cannot be checked against it; run on the device it was built on"
        )
    built = {"tensorrt": record.get("tensorrt"), **record["device"]}
    for key, value in here.items():
        if built.get(key) != value:
            raise EdgetlError(
                f"{path.parent / ENGINE_FILE} was built with {key} {built.get(key)!r}, this "
                f"machine has {value!r}; rebuild with `edgetl build {path.parent}`"
            )
    return record


TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs it (not on PATH)


def trtexec_lines(options: TensorRtOptions, precision: str) -> list[str]:
    """trtexec commands per TensorRT major for this bundle (11: strongly typed, no --fp16 or
    --int8; 10 on DLA: INT8 from the FP32 graph and the calibration cache)."""
    workspace, dla = options.workspace_mb, options.dla_core
    lines = []
    for major in options.majors:
        try:
            chosen = route(major, precision, dla >= 0)
        except EdgetlError as exc:
            lines.append(f"# TensorRT {major}: {exc}")
            continue
        command = [TRTEXEC, f"--onnx={chosen.onnx}", f"--memPoolSize=workspace:{workspace}M"]
        if dla >= 0:
            command += [f"--useDLACore={dla}", "--allowGPUFallback"]
        command += ["--" + flag.lower() for flag in chosen.flags if flag in ("INT8", "FP16")]
        if chosen.calibration:
            command.append(f"--calib={CALIBRATION_CACHE}")
        command.append(f"--saveEngine={ENGINE_FILE}")
        lines.append(f"# TensorRT {major}.x\n{' '.join(command)}")
    return lines


def device_doc(profile: TargetProfile, options: TensorRtOptions, precision: str) -> str:
    """DEVICE.md: what to do with this bundle on the device."""
    dla = options.dla_core
    versions = ", ".join(options.tensorrt_versions)
    from edgetl.core.selfwheel import wheel_name

    trtexec = "\n".join(f"    {line}" for block in trtexec_lines(options, precision)
                        for line in block.splitlines())  # fmt: skip
    dla_option = f" --dla-core {dla}" if dla >= 0 else ""
    from edgetl.backends.tensorrt.requirements import NUMPY_BELOW_2, pip_requirements

    requirements = pip_requirements(options.tensorrt_versions)
    install = " ".join(f"'{r}'" if "<" in r else r for r in requirements)
    numpy_note = (
        f"\n   (`{NUMPY_BELOW_2}`: TensorRT before 10.16, JetPack 6's 10.3 among them, reads "
        "NumPy 2's\n   arrays wrongly, silently.)\n"
        if NUMPY_BELOW_2 in requirements
        else ""
    )
    return f"""# {profile.name} bundle ({precision})

{profile.description}. For TensorRT {versions}.

1. Install edgetl's device side from the wheel in this bundle (edgetl is not on the index a
   Jetson uses). JetPack brings TensorRT and CUDA as system packages, so the environment
   must see them (`--system-site-packages`); PyPI's TensorRT wheels refuse Tegra, and no
   torch is needed. Copy this bundle to the device, unpack it (`tar xzf BUNDLE.tar.gz`),
   then in its directory (a venv also keeps pip off the system Python on PEP 668 systems;
   JetPack 6's Python is 3.10, which the wheel's `tomli` requirement covers):

       python3 -m venv --system-site-packages ~/edgetl && . ~/edgetl/bin/activate
       pip install ./{wheel_name()} {install}
{numpy_note}
2. Build the engine here, on the device. `edgetl build` checks every file's sha256, builds
   `{ENGINE_FILE}` with a timing cache beside it, records the TensorRT version and the device
   (CUDA's name and compute capability, the module and L4T release), then runs the reference
   set through the engine and fails outside the profile's tolerance:

       edgetl build .{dla_option}

3. Measure it (accuracy on the reference set in this bundle, latency on this device):

       edgetl bench .

Without edgetl, the same engine with trtexec (JetPack installs it at {TRTEXEC}):

{trtexec}
"""
