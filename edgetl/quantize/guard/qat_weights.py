"""QAT's weights: each convolution's INT8 weight values learned with the graph's own
per-channel scales, and written back into the same initializers.

Activation ranges and the head (qat.py) cannot fix a layer whose INT8 weights round badly:
on digits the stem convolution is where INT8 loses (the sensitivity report ranks it first;
keeping it float recovers 4.5 of 7.5 points). Here every INT8 convolution computes with
fake-quantized weights (round(w / s) * s per output channel, the rounding's gradient passed
straight through), so training moves weights across rounding boundaries the task's loss
cares about. The scales stay the graph's: only integer values change, so the graph keeps
its exact Q/DQ structure and TensorRT's rules (symmetric, per channel) still hold.

The student holds weights unfolded from BatchNorm (qat_graph.with_graph_weights divides the
graph's folded weights by k per channel), so its scale is the graph's divided by k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch.nn.utils import parametrize

from edgetl.backends.onnx_graph import producers


@dataclass(frozen=True)
class WeightSlot:
    """Where a convolution's INT8 weights live in the graph, and their per-channel scale."""

    node: str  # the Conv node's name
    values: str  # the initializer written back: int8 values, or the float weights a Q reads
    quantized: bool  # values holds integers (DQ(int8)); else floats (DQ(Q(float)))
    scale: np.ndarray  # (out_channels,) the graph's scale, folded space
    low: int
    high: int


def weight_slots(model: onnx.ModelProto) -> dict[str, WeightSlot]:
    """Conv node name -> its weight slot, for convolutions with symmetric per-channel INT8
    weights (the others are left as they are)."""
    producer = producers(model.graph)
    initializers = {init.name: init for init in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        dq = producer.get(node.input[1]) if node.op_type == "Conv" else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in initializers:
            continue
        scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float64)
        zero_name = dq.input[2] if len(dq.input) > 2 else None
        zero = (numpy_helper.to_array(initializers[zero_name])
                if zero_name in initializers else np.zeros(1, np.int8))  # fmt: skip
        if np.any(zero != 0) or zero.dtype != np.int8:
            continue  # asymmetric or unsigned weights: not learned here
        source, q = dq.input[0], producer.get(dq.input[0])
        if source in initializers:
            slot = WeightSlot(node.name, source, True, scale.reshape(-1), -128, 127)
        elif q is not None and q.op_type == "QuantizeLinear" and q.input[0] in initializers:
            slot = WeightSlot(node.name, q.input[0], False, scale.reshape(-1), -128, 127)
        else:
            continue
        found[node.name] = slot
    return found


class FakeQuantWeight(torch.nn.Module):
    """A parametrization: the weight as the graph computes with it, its rounding's gradient
    passed straight through."""

    scale: torch.Tensor

    def __init__(self, scale: torch.Tensor, low: int, high: int):
        super().__init__()
        self.register_buffer("scale", scale.reshape(-1, 1, 1, 1))
        self.low, self.high = float(low), float(high)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        x = weight / self.scale
        q = torch.clamp(x + (torch.round(x) - x).detach(), self.low, self.high)
        return q * self.scale


def _original(conv: torch.nn.Conv2d) -> torch.Tensor:
    """The trainable weight behind a parametrized convolution."""
    found: torch.Tensor = getattr(conv, "parametrizations").weight.original  # noqa: B009
    return found


def learn(convs: dict[str, torch.nn.Conv2d], scales: dict[str, np.ndarray]) -> list[torch.Tensor]:
    """Make each convolution's weight trainable through FakeQuantWeight at its unfolded
    scale; returns the parameters to optimize."""
    found = []
    for name, conv in convs.items():
        scale = torch.from_numpy(scales[name]).float()
        parametrize.register_parametrization(conv, "weight", FakeQuantWeight(scale, -128, 127))
        original = _original(conv)
        original.requires_grad_(True)
        found.append(original)
    return found


def written(
    model: onnx.ModelProto,
    slots: dict[str, WeightSlot],
    convs: dict[str, torch.nn.Conv2d],
    scales: dict[str, np.ndarray],
) -> int:
    """The learned integer values written into `model`'s initializers, in place; how many
    integer values changed."""
    initializers = {init.name: init for init in model.graph.initializer}
    changed = 0
    for name, conv in convs.items():
        slot = slots[name]
        weight = _original(conv).detach().numpy().astype(np.float64)
        shape = (-1,) + (1,) * (weight.ndim - 1)
        values = np.clip(np.round(weight / scales[name].reshape(shape)), slot.low, slot.high)
        init = initializers[slot.values]
        old = numpy_helper.to_array(init)
        before = old if slot.quantized else np.round(old / slot.scale.reshape(shape))
        changed += int(np.sum(before.reshape(values.shape) != values))
        new = values if slot.quantized else values * slot.scale.reshape(shape)
        init.CopyFrom(numpy_helper.from_array(new.astype(old.dtype).reshape(old.shape), init.name))
    return changed
