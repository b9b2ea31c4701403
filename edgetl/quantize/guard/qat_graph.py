"""The graph side of QAT (qat.py): which Q/DQ pair feeds each convolution, the graph's
convolutions matched to the module's, the graph's INT8 weights as the module computes with
them, and the learned ranges written back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edgetl.backends.onnx_graph import producers
from edgetl.core.errors import EdgetlError
from edgetl.quantize import qdq
from edgetl.quantize.guard.qat_biases import GraphBiases
from edgetl.train.model import Classifier, Run

RANGE_STEPS = 29  # candidate ranges per quantizer, from the calibrated one down to 2^-14 of it


@dataclass(frozen=True)
class Quantizer:
    """A Q/DQ pair feeding one or more convolutions' input: its initializers and range."""

    key: str  # the QuantizeLinear node's name
    scale: float
    zero_point: int
    low: int
    high: int
    scale_names: tuple[str, ...]  # the Q's and every matching DQ's scale initializer
    zero_names: tuple[str, ...]  # and zero-point initializers

    def candidates(self) -> list[tuple[float, int]]:
        """(scale, zero point) of the calibrated range and of ranges narrowed by factors of
        sqrt(2) down to 2^-14 of it: a min-max range one outlier channel widened by 1e3 is
        then among them (the lower end kept, the zero point re-derived)."""
        low_value = (self.low - self.zero_point) * self.scale
        high_value = (self.high - self.zero_point) * self.scale
        found = []
        for k in range(RANGE_STEPS):
            top = high_value * 2 ** (-k / 2)
            if self.zero_point == 0 and self.low < 0:  # symmetric: the range shrinks both ways
                found.append((self.scale * 2 ** (-k / 2), 0))
                continue
            bottom = max(low_value, -top) if low_value < 0 else low_value
            scale = max((top - bottom) / (self.high - self.low), 1e-12)
            zero = int(np.clip(round(self.low - bottom / scale), self.low, self.high))
            found.append((scale, zero))
        return found


def conv_input_quantizers(model: onnx.ModelProto) -> dict[str, Quantizer]:
    """Conv node name -> the Q/DQ pair its input comes through (convolutions with a float
    input are left out)."""
    producer = producers(model.graph)
    initializers = {init.name: init for init in model.graph.initializer}
    found: dict[str, Quantizer] = {}
    made: dict[str, Quantizer] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        dq = producer.get(node.input[0])
        q = (
            producer.get(dq.input[0])
            if dq is not None and dq.op_type == "DequantizeLinear"
            else None
        )
        if q is None or q.op_type != "QuantizeLinear" or len(q.input) < 3:
            continue
        if q.name not in made:
            made[q.name] = _quantizer(model, q, initializers)
        found[node.name] = made[q.name]
    return found


def _quantizer(model: onnx.ModelProto, q: onnx.NodeProto, initializers: dict) -> Quantizer:
    scale = numpy_helper.to_array(initializers[q.input[1]])
    zero = numpy_helper.to_array(initializers[q.input[2]])
    if scale.size != 1:
        raise EdgetlError(f"QAT: {q.name} quantizes per channel; activations are per tensor here")
    info = np.iinfo(zero.dtype)
    readers = [n for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]  # fmt: skip
    scales = tuple(dict.fromkeys([q.input[1]] + [n.input[1] for n in readers]))
    zeros = tuple(dict.fromkeys([q.input[2]] + [n.input[2] for n in readers if len(n.input) > 2]))
    return Quantizer(q.name, float(scale.reshape(())), int(zero.reshape(())), int(info.min),
                     int(info.max), scales, zeros)  # fmt: skip


@dataclass
class GraphStudent:
    """The run's classifier computing as the INT8 graph does: its convolutions (by the
    graph's node names) with the graph's INT8 weights (each one's BatchNorm unfolding kept)
    and the graph's (bias-corrected) biases."""

    model: Classifier
    convs: dict[str, torch.nn.Conv2d]
    unfolding: dict[str, np.ndarray]
    biases: GraphBiases


def graph_student(run: Run, model: onnx.ModelProto, sample: np.ndarray) -> GraphStudent:
    student = run.classifier()
    convs = aligned_convs(student, model, sample)
    unfolding = with_graph_weights(model, convs)
    biases = GraphBiases(student, model, convs, sample)
    biases.set_from_graph(model)
    return GraphStudent(student, convs, unfolding, biases)


def aligned_convs(
    student: torch.nn.Module, model: onnx.ModelProto, sample: np.ndarray
) -> dict[str, torch.nn.Conv2d]:
    """The graph's Conv nodes matched to the module's Conv2d layers by the order they run in,
    checked by weight shape: torch.onnx writes nodes in the order the forward pass runs."""
    called: list[torch.nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda m, _i, _o: called.append(m))
             for m in student.modules() if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    with torch.inference_mode():
        student(torch.from_numpy(sample).float())
    for hook in hooks:
        hook.remove()
    initializers = {init.name: init for init in model.graph.initializer}
    producer = producers(model.graph)
    nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    shapes = [_weight_shape(n.input[1], initializers, producer) for n in nodes]
    if len(nodes) != len(called) or any(
        shape != tuple(conv.weight.shape) for shape, conv in zip(shapes, called, strict=True)
    ):
        raise EdgetlError(
            "QAT: the graph's convolutions do not line up with the model's "
            f"({len(nodes)} in the graph, {len(called)} run); not an edgetl model"
        )
    return {node.name: conv for node, conv in zip(nodes, called, strict=True)}


def with_graph_weights(
    model: onnx.ModelProto, convs: dict[str, torch.nn.Conv2d]
) -> dict[str, np.ndarray]:
    """Each convolution's weights replaced by the graph's INT8 weights, dequantized: the graph
    holds them with BatchNorm folded in (w * k per output channel, k = gamma / sqrt(var +
    eps)), so they are unfolded by k, found per channel by least squares against the module's
    own weights (no BatchNorm needs naming). The student then computes with the very weights
    the target runs. Returns k per convolution whose weights were replaced."""
    producer = producers(model.graph)
    unfolded: dict[str, np.ndarray] = {}
    initializers = {init.name: init for init in model.graph.initializer}
    nodes = {node.name: node for node in model.graph.node}
    for name, conv in convs.items():
        dq = producer.get(nodes[name].input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue  # a float layer: its weights are the module's
        folded = _dequantized(dq, initializers, producer)
        if folded is None:
            continue
        own = conv.weight.detach().numpy().astype(np.float64)
        flat_own, flat_folded = own.reshape(len(own), -1), folded.reshape(len(own), -1)
        power = (flat_own**2).sum(1)
        k = np.where(power > 0, (flat_own * flat_folded).sum(1) / np.maximum(power, 1e-30), 1.0)
        k = np.where(np.abs(k) > 1e-12, k, 1.0)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(folded / k.reshape(-1, 1, 1, 1)).float())
        unfolded[name] = k
    return unfolded


def _dequantized(dq: onnx.NodeProto, initializers: dict, producer: dict) -> np.ndarray | None:
    """A weight as the graph computes with it: DQ of INT8 values, or DQ(Q(float weights))."""

    def value(name: str) -> np.ndarray:
        return numpy_helper.to_array(initializers[name]).astype(np.float64)

    scale = value(dq.input[1])
    zero = value(dq.input[2]) if len(dq.input) > 2 else np.zeros_like(scale)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    source = dq.input[0]
    q = producer.get(source)
    if source in initializers:
        values = value(source)
    elif q is not None and q.op_type == "QuantizeLinear" and q.input[0] in initializers:
        weights = value(q.input[0])
        dtype = (
            numpy_helper.to_array(initializers[q.input[2]]).dtype if len(q.input) > 2 else np.uint8
        )
        info = np.iinfo(dtype)
        shape = [1] * weights.ndim
        shape[axis if scale.size > 1 else 0] = scale.size
        values = np.clip(np.round(weights / scale.reshape(shape)) + zero.reshape(shape),
                         info.min, info.max)  # fmt: skip
    else:
        return None
    shape = [1] * values.ndim
    shape[axis if scale.size > 1 else 0] = scale.size
    return (values - zero.reshape(shape)) * scale.reshape(shape)


def _weight_shape(name: str, initializers: dict, producer: dict) -> tuple[int, ...]:
    """A Conv's weight shape, through the DequantizeLinear that feeds it an INT8 weight."""
    while name not in initializers and name in producer:
        name = producer[name].input[0]
    if name not in initializers:
        return ()
    return tuple(initializers[name].dims)


def with_ranges(
    model: onnx.ModelProto, quantizers: dict[str, Quantizer], learned: dict[str, tuple[float, int]]
) -> onnx.ModelProto:
    """`model` with each quantizer's (scale, zero point) written into its Q and DQ nodes."""
    result = qdq.copy_model(model)
    initializers = {init.name: init for init in result.graph.initializer}
    for key, quantizer in quantizers.items():
        scale, zero = learned[key]
        for name in quantizer.scale_names:
            _set(initializers[name], scale)
        for name in quantizer.zero_names:
            _set(initializers[name], zero)
    return result


def _set(initializer: onnx.TensorProto, value: float) -> None:
    old = numpy_helper.to_array(initializer)
    new = np.asarray(value).astype(old.dtype).reshape(old.shape)
    initializer.CopyFrom(numpy_helper.from_array(new, initializer.name))
