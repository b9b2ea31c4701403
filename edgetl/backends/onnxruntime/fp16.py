"""An FP16-typed graph on ONNX Runtime's CPU provider (host only: reads ONNX): which of its
operators ran in FP32, and a session without ONNX Runtime's warnings about them.

The CPU provider has FP16 kernels for few operators on x86 (none for Ceil, the backbone's
same-padding; on this host not for Conv either): at load it wraps the others in Casts
(`InsertedPrecisionFreeCast_*`) and warns, in colour, once per session and per optimisation
pass. That is expected when checking a graph TensorRT will run in FP16, so edgetl says it
once, in words, with what fell back.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx

CAST_PREFIX = "InsertedPrecisionFreeCast_"
ERROR = 3  # ONNX Runtime's logging severity: errors and worse only


@contextmanager
def quiet() -> Iterator[None]:
    """ONNX Runtime's default logger at errors only, restored after (sessions made inside
    log nothing about FP16 fallbacks)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(ERROR)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)  # ONNX Runtime's default: warnings


def fp32_fallbacks(model: onnx.ModelProto) -> Counter[str]:
    """Operator type -> how many nodes of it ONNX Runtime's CPU provider ran in FP32 here
    (it fed them through the Casts it inserted)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.log_severity_level = ERROR
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized)).graph
    cast = {out for node in graph.node if node.name.startswith(CAST_PREFIX) for out in node.output}
    return Counter(
        node.op_type
        for node in graph.node
        if node.op_type != "Cast" and any(name in cast for name in node.input)
    )
