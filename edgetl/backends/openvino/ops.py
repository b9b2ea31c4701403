"""OpenVINO's op placement: the compiled model's runtime graph (what the plugin executes
after its own fusions), each node's layerType and runtimePrecision."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgetl.backends.base import PlacedOps

SKIPPED = ("Input", "Output", "Parameter", "Result", "Constant", "Const")  # no kernel runs


def op_placement(compiled: Any, device: str) -> list[PlacedOps]:
    counts: Counter[tuple[str, str]] = Counter()
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        layer = str(info["layerType"].astype(str))
        if layer in SKIPPED:
            continue
        counts[(layer, str(info["runtimePrecision"].astype(str)).lower())] += 1
    return [PlacedOps(op, device, precision, n) for (op, precision), n in counts.items()]
