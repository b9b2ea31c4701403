"""ONNX Runtime's op placement from its own profiler: one batch-1 run of the fully optimized
session, and per node that ran, its op type (a DequantizeLinear -> Conv -> QuantizeLinear
group runs as one QLinearConv), the execution provider that ran it and the element type it
read. No onnx package needed: a device can answer too."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.base import PlacedOps

CONVERT_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast")
PRECISIONS = {"int8": "int8", "uint8": "int8", "float": "fp32", "float16": "fp16",
              "bfloat16": "bf16"}  # fmt: skip


def op_placement(model: Path, threads: int) -> list[PlacedOps]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgetl-ort-ops-") as work:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        feed = {port.name: np.zeros([d if isinstance(d, int) else 1 for d in port.shape],
                                    np.float32)  # zeros of the graph's shape, batch 1
                for port in session.get_inputs()}  # fmt: skip
        session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    counts: Counter[tuple[str, str, str]] = Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        args = event["args"]
        counts[(args["op_name"], args["provider"], _precision(args))] += 1
    return [PlacedOps(op, where, precision, n) for (op, where, precision), n in counts.items()]


def _precision(args: dict[str, Any]) -> str:
    """The element type of the node's first input (`input_type_shape`: [{type: shape}])."""
    if args["op_name"] in CONVERT_OPS:
        return "convert"
    inputs = args.get("input_type_shape") or [{}]
    first = str(next(iter(inputs[0]), ""))
    return PRECISIONS.get(first, first or "-")
