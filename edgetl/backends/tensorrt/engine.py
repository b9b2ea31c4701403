"""Building a TensorRT engine from a bundle's ONNX, on the device, with TensorRT's Python API.

What each TensorRT major builds from is data (ROUTES): TensorRT 11 is strongly typed only
(no FP16/INT8 builder flags, no implicit INT8 calibration), so precision comes from the
ONNX's tensor types; TensorRT 10 takes the FP32 graph with the FP16 flag, and on DLA, which
runs no Q/DQ layers, INT8 from the FP32 graph and the calibration cache. Every TensorRT name
used here is checked against the real 10.x and 11.x bindings in CI
(tests/test_tensorrt_api.py), ROUTES' flag names per major included.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.core.errors import CheckFailed, EdgetlError

MODEL_FILE = "model.onnx"  # INT8: the Q/DQ graph; FP16: the FP32 graph
FP32_FILE = "model.fp32.onnx"  # INT8 bundles: the FP32 graph the calibration cache is for
FP16_FILE = "model.fp16.onnx"  # FP16 bundles: FP16-typed weights and math, FP32 I/O
DYNAMIC_MAX_BATCH = 32  # optimization profile of a --dynamic-batch bundle: 1..32, opt 8
DYNAMIC_OPT_BATCH = 8


@dataclass(frozen=True)
class Route:
    """How one TensorRT major builds one precision on one device kind."""

    onnx: str  # the bundle file parsed
    flags: tuple[str, ...]  # trt.BuilderFlag members set
    calibration: bool = False  # TensorRT 10 implicit INT8 from calibration.cache


ROUTES: dict[tuple[int, str, str], Route] = {
    # TensorRT 10: weakly typed. INT8 Q/DQ on the GPU (FP16 lets unquantized layers use it).
    (10, "int8", "GPU"): Route(MODEL_FILE, ("INT8", "FP16")),
    # DLA runs no Q/DQ layers (with GPU fallback a Q/DQ network silently lands on the GPU):
    # INT8 on DLA is the FP32 graph with the calibration cache's ranges.
    (10, "int8", "DLA"): Route(FP32_FILE, ("INT8", "FP16", "GPU_FALLBACK"), calibration=True),
    (10, "fp16", "GPU"): Route(MODEL_FILE, ("FP16",)),
    (10, "fp16", "DLA"): Route(MODEL_FILE, ("FP16", "GPU_FALLBACK")),
    # TensorRT 11: strongly typed only; precision is the ONNX's.
    (11, "int8", "GPU"): Route(MODEL_FILE, ()),
    # 11.4.1 brings DLA back on AGX Orin (JetPack 7.2.2+), strongly typed: the pre-quantized
    # (Q/DQ) ONNX sets INT8 there, as FP16 types set FP16 ("Strongly Typed Networks for DLA",
    # TensorRT 11.4.1 docs, read 2026-12); layers DLA cannot run fall back to the GPU.
    (11, "int8", "DLA"): Route(MODEL_FILE, ("GPU_FALLBACK",)),
    (11, "fp16", "GPU"): Route(FP16_FILE, ()),
    (11, "fp16", "DLA"): Route(FP16_FILE, ("GPU_FALLBACK",)),
}


def route(major: int, precision: str, dla: bool) -> Route:
    """The route, or exit 2 naming what to do instead."""
    kind = "DLA" if dla else "GPU"
    found = ROUTES.get((min(major, 11), precision, kind))
    if found is not None:
        return found
    raise EdgetlError(f"TensorRT {major}: no {precision} build for {kind}")


def carried(majors: list[int], precision: str, dla: bool) -> dict[str, list[int]]:
    """The graphs a bundle carries for its TensorRT majors (none named: every major edgetl
    knows): file -> the majors that build from it (a major with no route for this precision
    carries nothing)."""
    files: dict[str, list[int]] = {}
    for major in majors or sorted({major for major, _, _ in ROUTES}):  # none named: all
        try:
            files.setdefault(route(major, precision, dla).onnx, []).append(major)
        except EdgetlError:
            continue
    return files


@dataclass
class EngineBuild:
    engine: bytes
    timing_cache: bytes
    record: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def cache_calibrator(trt: Any, cache: bytes) -> Any:
    """TensorRT 10's implicit INT8 from a calibration cache alone: no batches to run."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None  # every range comes from the cache

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            return None

    return Calibrator()


def build_engine(
    bundle: Path,
    precision: str,
    workspace_mb: int,
    dla_core: int,
    timing_cache: bytes | None,
    calibration_cache: bytes | None = None,
) -> EngineBuild:
    """Parse the route's ONNX, configure, build; records what was used and which layers run
    where (DLA or GPU)."""
    import tensorrt as trt

    major = int(str(trt.__version__).split(".")[0])
    chosen = route(major, precision, dla_core >= 0)
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except TypeError as exc:  # the bindings return no builder without a usable GPU
        raise EdgetlError(
            f"TensorRT {trt.__version__} cannot create a builder here ({exc}): no usable CUDA "
            "GPU; run `edgetl build` on the device"
        ) from exc
    strongly_typed = major >= 11
    onnx_path = bundle / chosen.onnx
    network, parser = _parse(trt, builder, logger, onnx_path, strongly_typed)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    used = ["strongly typed"] if strongly_typed else []
    used += _set_flags(trt, config, chosen, bundle, calibration_cache)
    dynamic = _optimization_profile(builder, network, config, dla_core >= 0)
    placement = _place_on_dla(trt, network, config, dla_core)
    if dla_core >= 0:
        used.append(f"DLA {dla_core}")
    warnings = _attach_timing_cache(config, timing_cache)
    # DETAILED: the engine inspector then says where each built layer runs (DLA or GPU).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CheckFailed(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    engine = bytes(serialized)
    placement.update(engine_placement(trt, engine, logger, dla_core))
    record = {
        "tensorrt": str(trt.__version__),
        "precision": precision,
        "onnx": chosen.onnx,
        "flags": used,
        "workspace_mb": workspace_mb,
        "dla_core": dla_core,
        "dynamic_batch": dynamic,
        **placement,
        "build_s": round(time.perf_counter() - started, 2),
    }
    cache = config.get_timing_cache()
    timing = bytes(cache.serialize()) if cache is not None else b""  # never lose the engine
    return EngineBuild(engine, timing, record, warnings)


def _set_flags(
    trt: Any, config: Any, chosen: Route, bundle: Path, calibration_cache: bytes | None
) -> list[str]:
    """The route's builder flags (and for implicit INT8 its calibrator); the flags set."""
    for name in chosen.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if chosen.calibration:
        if calibration_cache is None:
            raise EdgetlError(f"{bundle}: INT8 on DLA needs the bundle's calibration.cache")
        config.int8_calibrator = cache_calibrator(trt, calibration_cache)
    return list(chosen.flags)


def _attach_timing_cache(config: Any, data: bytes | None) -> list[str]:
    """The device's timing cache, or a fresh one when TensorRT rejects it (another device or
    release): with none attached, get_timing_cache() after the build is None."""
    cache = config.create_timing_cache(data or b"")
    if config.set_timing_cache(cache, ignore_mismatch=False):
        return []
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return ["the timing cache is from another device or TensorRT: not used (a fresh one is)"]


def engine_placement(trt: Any, engine: bytes, logger: Any, dla_core: int) -> dict[str, Any]:
    """Where the built engine's layers run, read back with TensorRT's engine inspector: the
    builder moves layers after any plan (at most 16 DLA subgraphs per core, sizes DLA does
    not take), so the pre-build guess (can_run_on_DLA) is only what was asked for. A DLA
    subgraph is one engine layer (a ForeignNode, or LayerType DLA); everything else is the
    GPU's, the reformats to and from DLA memory included."""
    runtime = trt.Runtime(logger)
    if dla_core >= 0:
        runtime.DLA_core = dla_core
    inspected = runtime.deserialize_cuda_engine(engine)
    if inspected is None:
        return {"placement": "unknown (the engine did not deserialize for inspection)"}
    inspector = inspected.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    layers = [layer if isinstance(layer, dict) else {"Name": str(layer)}
              for layer in info.get("Layers", [])]  # fmt: skip
    on_dla = [dla_core >= 0 and _on_dla(layer) for layer in layers]
    gpu = [str(layer.get("Name", "")) for layer, dla in zip(layers, on_dla, strict=True) if not dla]
    return {
        "placement": "engine inspector",
        "dla_layers": sum(on_dla),
        "gpu_layers": len(gpu),
        "gpu_fallback_layers": gpu if dla_core >= 0 else [],
        "layer_types": layer_types(layers, on_dla),
    }


# The inspector's "Format/Datatype" of a layer's first output, short ("Half", "Int8") or
# long ("Row major linear FP16 format", "Channel major INT8 format where ..."): its precision
PRECISIONS = (("int8", "int8"), ("fp16", "fp16"), ("half", "fp16"), ("fp32", "fp32"),
              ("float", "fp32"), ("int32", "int32"), ("bool", "bool"))  # fmt: skip


def layer_types(layers: list[dict[str, Any]], on_dla: list[bool]) -> dict[str, int]:
    """How many engine layers of each type run where in which precision, "DLA|GPU LayerType
    precision" -> count: `edgetl inspect`'s op placement, from the engine inspector."""
    found: dict[str, int] = {}
    for layer, dla in zip(layers, on_dla, strict=True):
        outputs = layer.get("Outputs") or [{}]
        datatype = str(outputs[0].get("Format/Datatype", "") if isinstance(outputs[0], dict)
                       else "").lower()  # fmt: skip
        precision = next((p for key, p in PRECISIONS if key in datatype), "unknown")
        key = f"{'DLA' if dla else 'GPU'} {layer.get('LayerType', 'unknown')} {precision}"
        found[key] = found.get(key, 0) + 1
    return found


def _on_dla(layer: dict[str, Any]) -> bool:
    kind = str(layer.get("LayerType", ""))
    return kind == "DLA" or (
        str(layer.get("Name", "")).startswith("{ForeignNode[") and kind != "Myelin"
    )


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, strongly_typed: bool) -> Any:
    """The network from the ONNX file (strongly typed on TensorRT 11), and its parser (which
    must outlive the build: the network refers to its weights)."""
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgetlError(f"{onnx_path}: TensorRT cannot parse it: {'; '.join(errors)}")
    return network, parser


def _place_on_dla(trt: Any, network: Any, config: Any, dla_core: int) -> dict[str, Any]:
    """DLA as the default device (GPU fallback); which network layers were asked of it
    (`planned_*`: what the builder may still move, see engine_placement)."""
    if dla_core < 0:
        return {"planned_dla_layers": 0}
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    refused = [
        network.get_layer(i).name
        for i in range(network.num_layers)
        if not config.can_run_on_DLA(network.get_layer(i))
    ]
    return {"planned_dla_layers": network.num_layers - len(refused), "planned_gpu": refused}


def _optimization_profile(builder: Any, network: Any, config: Any, dla: bool) -> Any:
    """A dynamic batch dimension needs an optimization profile (min 1, opt 8, max 32);
    DLA takes static shapes only. Returns the profile's batch range, or None when static."""
    tensor = network.get_input(0)
    shape = list(tensor.shape)
    if shape[0] != -1:
        return None
    if dla:
        raise EdgetlError(
            "DLA builds need a static batch: export without --dynamic-batch, or build on the "
            "GPU (`edgetl build BUNDLE --dla-core -1`)"
        )
    rest = shape[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(
        tensor.name, [1, *rest], [DYNAMIC_OPT_BATCH, *rest], [DYNAMIC_MAX_BATCH, *rest]
    )
    config.add_optimization_profile(profile)
    return {"min": 1, "opt": DYNAMIC_OPT_BATCH, "max": DYNAMIC_MAX_BATCH}
