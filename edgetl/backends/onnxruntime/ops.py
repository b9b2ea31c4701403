"""ONNX Runtime's op placement: each node's execution provider (the session's own record,
`session.record_ep_graph_assignment_info`), and the precision of what runs after its full
optimization (a DequantizeLinear -> Conv -> QuantizeLinear group runs as one QLinearConv)."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from edgetl.backends.base import PlacedOps

INT8_OPS = ("QLinear", "Integer", "QGemm", "QAttention", "DynamicQuantize")
CONVERT_OPS = ("QuantizeLinear", "DequantizeLinear", "Cast")


def op_placement(model: Path, threads: int) -> list[PlacedOps]:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgetl-ort-ops-") as work:
        optimized = Path(work) / "optimized.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimized)
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        options.log_severity_level = 3  # its warning that the saved graph is machine-specific
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        assigned = {node.name: part.ep_name for part in session.get_provider_graph_assignment_info()
                    for node in part.get_nodes()}  # fmt: skip
        providers = sorted(set(assigned.values())) or session.get_providers()[:1]
        graph = onnx.load(str(optimized), load_external_data=False).graph
    counts: Counter[tuple[str, str, str]] = Counter()
    for node in graph.node:
        # a fused node has a new name: it runs where its parts were placed (one EP here)
        where = assigned.get(node.name, providers[0] if len(providers) == 1 else "fused")
        counts[(node.op_type, where, _precision(node.op_type, node.domain))] += 1
    return [PlacedOps(op, where, precision, n) for (op, where, precision), n in counts.items()]


def _precision(op: str, domain: str) -> str:
    if any(op.startswith(prefix) or op.endswith(prefix) for prefix in INT8_OPS):
        return "int8"
    if op in CONVERT_OPS:
        return "convert"
    return "fp32"
