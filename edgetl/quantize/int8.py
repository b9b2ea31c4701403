"""Small helpers around an INT8 graph: its metadata, and whether it pays off here."""

from __future__ import annotations

import json

import numpy as np
import onnx

from edgetl.backends import Runner
from edgetl.core.measures.timing import interleaved_p50


def compare_speed(fp32: Runner, int8: Runner, single: np.ndarray) -> dict[str, float]:
    """A quick side-by-side p50: enough to warn when INT8 does not pay off here."""
    p50 = interleaved_p50({"fp32": lambda: fp32.run(single), "int8": lambda: int8.run(single)}, 100)
    return {
        "fp32_p50_ms": round(p50["fp32"], 4),
        "int8_p50_ms": round(p50["int8"], 4),
        "ratio": round(p50["int8"] / p50["fp32"], 3),
    }


def copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    """The FP32 export's edgetl metadata (classes, preprocessing) onto the INT8 graph."""
    del target.metadata_props[:]
    for prop in source.metadata_props:
        target.metadata_props.add(key=prop.key, value=prop.value)
    target.metadata_props.add(key="edgetl.precision", value=json.dumps("int8"))
