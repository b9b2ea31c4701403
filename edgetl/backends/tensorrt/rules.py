"""TensorRT's rules for an explicitly quantized (Q/DQ) ONNX model, checked on the host.

TensorRT 10.1 deprecated implicit INT8 calibration and TensorRT 11 removed it, so INT8 for
TensorRT is a Q/DQ ONNX: opset >= 13; int8 quantizers with zero-point 0 (symmetric)
everywhere; no uint8 and no QLinear* operators. `violations` names every node that breaks
one; `advisories` what builds but costs accuracy (per-tensor convolution weights); `to_tensorrt` is
the backend's own rewrite of what NNCF's symmetric preset still leaves as uint8.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgetl.backends.onnx_graph import QDQ_OPS, constants, prune
from edgetl.backends.onnx_graph import producers as _producers

MIN_OPSET = 13
INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "ConvInteger",
               "MatMulInteger", "QLinearAveragePool", "QLinearGlobalAveragePool",
               "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat")  # fmt: skip


def violations(model: onnx.ModelProto) -> list[str]:
    """Every rule the model breaks, one line per offending node."""
    found = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        found.append(f"opset {opset}: TensorRT's Q/DQ needs opset >= {MIN_OPSET}")
    values = constants(model.graph)
    for node in model.graph.node:
        if node.op_type in INTEGER_OPS or node.op_type.startswith("QLinear"):
            found.append(
                f"{node.name or node.output[0]} ({node.op_type}): integer operators are not "
                "TensorRT's; use QuantizeLinear/DequantizeLinear pairs"
            )
        elif node.op_type in QDQ_OPS:
            found += _quantizer_violations(node, values)
    return found


def advisories(model: onnx.ModelProto) -> list[str]:
    """What TensorRT builds but costs accuracy: per-tensor weight scales on convolutions
    (TensorRT accepts them; one scale per output channel keeps more of each filter)."""
    found = []
    values = constants(model.graph)
    producers = _producers(model.graph)
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            weight = producers.get(node.input[1])
            if weight is not None and weight.op_type == "DequantizeLinear":
                found += _weight_violations(node, weight, values)
    return found


def _quantizer_violations(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> list[str]:
    name = f"{node.name or node.output[0]} ({node.op_type})"
    if len(node.input) < 3 or not node.input[2]:
        # No zero-point: uint8 by the ONNX default; TensorRT needs an int8 one.
        return [f"{name}: no zero-point (uint8 by default); give an int8 zero-point of 0"]
    zero = values.get(node.input[2])
    if zero is None:
        return [f"{name}: zero-point {node.input[2]} is not a constant"]
    problems = []
    if zero.dtype != np.int8:
        problems.append(f"{name}: {zero.dtype} zero-point; TensorRT takes int8 only")
    if np.any(zero != 0):
        problems.append(
            f"{name}: non-zero zero-point {zero.ravel()[:4].tolist()}; TensorRT quantizes "
            "symmetrically (zero-point 0)"
        )
    return problems


def _weight_violations(
    conv: onnx.NodeProto, dq: onnx.NodeProto, values: dict[str, np.ndarray]
) -> list[str]:
    scale = values.get(dq.input[1])
    weight = values.get(dq.input[0])
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if scale is None or weight is None:
        return []
    channels = weight.shape[1 if conv.op_type == "ConvTranspose" else 0]
    expected_axis = 1 if conv.op_type == "ConvTranspose" else 0
    if scale.size != channels or (scale.size > 1 and axis != expected_axis):
        return [
            f"{conv.name} ({conv.op_type}): weights quantized per-tensor (scale of "
            f"{scale.size} values, axis {axis}); one scale per output channel ({channels}) "
            f"on axis {expected_axis} keeps more accuracy"
        ]
    return []


def to_tensorrt(model: onnx.ModelProto) -> onnx.ModelProto:
    """uint8 quantizers with zero-point 0 become int8 ones over the same range.

    [0, 255 s] becomes [-127 s', 127 s'] with s' = 255 s / 127: half the resolution for
    those (non-negative) tensors; the accuracy guard measures what that costs.
    """
    values = {init.name: init for init in model.graph.initializer}
    rewritten: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS or len(node.input) < 3:
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        zero = values.get(zero_name)
        scale = values.get(scale_name)
        if zero is None or scale is None or zero.data_type != TensorProto.UINT8:
            continue
        if np.any(numpy_helper.to_array(zero) != 0):
            continue  # asymmetric: the validator names it
        if zero_name not in rewritten:
            array = numpy_helper.to_array(zero).astype(np.int8)
            zero.CopyFrom(numpy_helper.from_array(array, zero_name))
            rewritten.add(zero_name)
        if scale_name not in rewritten:
            wider = numpy_helper.to_array(scale).astype(np.float32) * np.float32(255.0 / 127.0)
            scale.CopyFrom(numpy_helper.from_array(wider, scale_name))
            rewritten.add(scale_name)
    del model.graph.value_info[:]  # stale element types
    return prune(model)
