"""Graph surgery on QDQ ONNX models: what the engines leave for us to do.

`keep_float` runs chosen nodes in float (original weights, un-quantized inputs), the
primitive the accuracy guard uses to restore sensitive layers. Rewrites that only one
runtime needs live with that runtime's backend (edgetl/backends/).
"""

from __future__ import annotations

import onnx

from edgetl.backends.onnx_graph import QDQ_OPS, copy_model, prune
from edgetl.backends.onnx_graph import producers as _producers

__all__ = ["copy_model", "keep_float", "prune", "quantized_nodes"]


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


def to_float16(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` where the named float nodes compute in FP16: their float weight and
    bias initializers stored as FP16, their activation inputs cast to FP16 and their outputs
    cast back to FP32 for the rest of the graph (a runtime that runs FP16 runs them so;
    TensorRT's strongly typed networks take the types as written)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    result = copy_model(model)
    graph = result.graph
    initializers = {init.name: init for init in graph.initializer}
    chosen = set(names)
    nodes: list[onnx.NodeProto] = []
    renamed: set[str] = set()
    for node in graph.node:
        if node.name not in chosen:
            nodes.append(node)
            continue
        for index, name in enumerate(node.input):
            if not name:
                continue
            half = f"{name}/fp16/{node.name}"
            if name in initializers:
                value = numpy_helper.to_array(initializers[name])
                if value.dtype != np.float32:
                    continue
                graph.initializer.append(numpy_helper.from_array(value.astype(np.float16), half))
            else:
                nodes.append(helper.make_node("Cast", [name], [half], f"{half}/Cast",
                                              to=TensorProto.FLOAT16))  # fmt: skip
            node.input[index] = half
        nodes.append(node)
        for index, name in enumerate(node.output):
            half = f"{name}/fp16"
            node.output[index] = half
            renamed.add(name)
            nodes.append(helper.make_node("Cast", [half], [name], f"{half}/Cast",
                                          to=TensorProto.FLOAT))  # fmt: skip
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [info for info in graph.value_info if info.name not in renamed]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return prune(result)
