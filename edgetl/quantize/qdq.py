"""Graph surgery on QDQ ONNX models: what the engines leave for us to do.

- `keep_float`: run chosen nodes in float (original weights, un-quantized inputs), the
  primitive the accuracy guard uses to restore sensitive layers.
- `for_onnxruntime`: two lossless rewrites that let ONNX Runtime fuse NNCF's QDQ pairs
  into integer kernels (QLinearConv), as it does for its own quantizer's output.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            found[name].append(node)
    return found


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of compute nodes that read at least one dequantized input, in graph order."""
    producers = _producers(model.graph)
    names = []
    for node in model.graph.node:
        if node.op_type in QDQ_OPS or not node.name:
            continue
        if any(
            name in producers and producers[name].op_type == "DequantizeLinear"
            for name in node.input
        ):
            names.append(node.name)
    return names


def keep_float(
    quantized: onnx.ModelProto, original: onnx.ModelProto, names: list[str]
) -> onnx.ModelProto:
    """A copy of `quantized` where the named nodes compute in float, as in `original`.

    Each dequantized input of such a node is replaced by the original's float initializer
    (weights, bias) or float activation tensor, found by the node's name in `original`. The
    node's output stays quantized for its consumers.
    """
    model = copy_model(quantized)
    graph = model.graph
    producers = _producers(graph)
    original_nodes = {node.name: node for node in original.graph.node}
    original_inits = {init.name: init for init in original.graph.initializer}
    present = {init.name for init in graph.initializer}
    graph_inputs = {value.name for value in graph.input}
    original_producers = _producers(original.graph)
    for node in graph.node:
        if node.name not in names:
            continue
        reference = original_nodes[node.name]
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            float_name = reference.input[i]
            if float_name in original_inits:
                # ORT names a dequantized bias like the float one it replaces: rename ours.
                target = float_name if float_name not in producers else f"{float_name}.float"
                if target not in present:
                    init = onnx.TensorProto()
                    init.CopyFrom(original_inits[float_name])
                    init.name = target
                    graph.initializer.append(init)
                    present.add(target)
                node.input[i] = target
            elif float_name in graph_inputs or _same_producer(
                float_name, producers, original_producers
            ):
                # The float activation still exists. When the quantizer removed the Clip or
                # Relu that made it (ORT does, and gives the Conv before it the Clip's output
                # name), it is not the same tensor, and the input stays quantized.
                node.input[i] = float_name
    return prune(model)


def _same_producer(
    name: str, producers: dict[str, onnx.NodeProto], original: dict[str, onnx.NodeProto]
) -> bool:
    mine, theirs = producers.get(name), original.get(name)
    return mine is not None and theirs is not None and mine.name == theirs.name


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(model)
    return result


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes whose outputs nobody reads, then initializers nobody reads."""
    graph = model.graph
    outputs = {out.name for out in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if not any(out in used for out in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | outputs
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model


def for_onnxruntime(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite QDQ activations so ONNX Runtime's CPU provider fuses them into integer kernels.

    1. int8 activation quantizers become uint8 with zero point + 128 (the same grid of
       values): ORT's QLinearConv wants input and output of one type, and NNCF makes
       activations after residual branches signed.
    2. A Clip/Relu whose output only feeds quantizers whose range already lies inside the
       clip range is dropped (ORT's own quantizer does the same): Conv -> Q then fuses.
    """
    _activations_to_uint8(model.graph)
    _drop_redundant_clips(model.graph)
    del model.graph.value_info[:]  # stale element types; ORT re-infers them
    return prune(model)


def _activations_to_uint8(graph: onnx.GraphProto) -> None:
    weights = {init.name for init in graph.initializer}
    producers = _producers(graph)
    zero_points = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type not in QDQ_OPS or len(node.input) < 3:
            continue
        source = node.input[0]
        if node.op_type == "DequantizeLinear":
            q = producers.get(source)
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a stored int8 weight
            source = q.input[0]
        if source in weights:
            continue
        zero_point = zero_points.get(node.input[2])
        if zero_point is None or zero_point.data_type != TensorProto.INT8:
            continue
        shifted = numpy_helper.to_array(zero_point).astype(np.int16) + 128
        zero_point.CopyFrom(numpy_helper.from_array(shifted.astype(np.uint8), zero_point.name))


def _drop_redundant_clips(graph: onnx.GraphProto) -> None:
    constants = _constants(graph)
    consumers = _consumers(graph)
    outputs = {out.name for out in graph.output}
    for node in list(graph.node):
        if node.op_type not in ("Clip", "Relu") or node.output[0] in outputs:
            continue
        readers = consumers.get(node.output[0], [])
        if not readers or any(r.op_type != "QuantizeLinear" for r in readers):
            continue
        low, high = _clip_range(node, constants)
        if all(_quantizer_within(r, constants, low, high) for r in readers):
            for reader in readers:
                reader.input[0] = node.input[0]
            graph.node.remove(node)


def _clip_range(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> tuple[float, float]:
    if node.op_type == "Relu":
        return 0.0, float("inf")
    bounds = [float("-inf"), float("inf")]
    for i in (1, 2):
        if len(node.input) > i and node.input[i]:
            if node.input[i] not in constants:
                return float("inf"), float("-inf")  # dynamic bounds: never drop
            bounds[i - 1] = float(constants[node.input[i]])
    return bounds[0], bounds[1]


def _quantizer_within(
    q: onnx.NodeProto, constants: dict[str, np.ndarray], low: float, high: float
) -> bool:
    if len(q.input) < 3 or q.input[1] not in constants or q.input[2] not in constants:
        return False
    scale = constants[q.input[1]].astype(np.float64)
    zero = constants[q.input[2]]
    info = np.iinfo(zero.dtype)
    q_low = (info.min - zero.astype(np.float64)) * scale
    q_high = (info.max - zero.astype(np.float64)) * scale
    # The grid may reach a hair past the clip bound through float rounding of the scale.
    slack = 1e-3 * max(abs(high), 1.0) if np.isfinite(high) else 0.0
    return bool(np.all(q_low >= low - 1e-6) and np.all(q_high <= high + slack))
