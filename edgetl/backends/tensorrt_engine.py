"""Building a TensorRT engine from a bundle's ONNX, on the device, with TensorRT's Python API.

Written against the documented API and type-checked with tensorrt-stubs in CI; it runs only
where TensorRT is installed (a Jetson, or a GPU host with TensorRT).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.errors import CheckFailed, EdgetlError


@dataclass
class EngineBuild:
    engine: bytes
    timing_cache: bytes
    record: dict[str, Any] = field(default_factory=dict)


def build_engine(
    onnx_path: Path,
    precision: str,
    workspace_mb: int,
    dla_core: int,
    timing_cache: bytes | None,
) -> EngineBuild:
    """INT8 Q/DQ: strongly typed on TensorRT >= 11, INT8 + FP16 flags on 10 (explicit
    quantization; the flags only allow the precisions). FP16: the FP16 flag. DLA with GPU
    fallback when `dla_core` >= 0; the layers that fall back are recorded."""
    import tensorrt as trt

    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = precision == "int8" and major >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgetlError(f"{onnx_path}: TensorRT cannot parse it: {'; '.join(errors)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    used = ["strongly typed"] if strongly_typed else []
    if not strongly_typed and precision in ("int8", "fp16"):
        config.set_flag(trt.BuilderFlag.FP16)
        used.append("FP16")
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            used.append("INT8")
    fallback: list[str] = []
    if dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        used.append(f"DLA {dla_core} + GPU fallback")
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if not config.can_run_on_DLA(layer):
                fallback.append(layer.name)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CheckFailed(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    record = {
        "tensorrt": str(trt.__version__),
        "precision": precision,
        "flags": used,
        "workspace_mb": workspace_mb,
        "dla_core": dla_core,
        "gpu_fallback_layers": fallback,
        "build_s": round(time.perf_counter() - started, 2),
    }
    return EngineBuild(bytes(serialized), bytes(config.get_timing_cache().serialize()), record)
