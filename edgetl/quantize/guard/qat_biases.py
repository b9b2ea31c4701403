"""The convolutions' biases in QAT (qat.py): the student starts from the INT8 graph's own,
learns them, and the learned ones are written back.

NNCF's bias correction moves an INT8 graph's biases off the module's (digits: floating one
depthwise convolution's weights while keeping its corrected bias took val from 94% to 55%).
A student with the module's biases learned against errors the graph had already corrected,
and its result ran with both corrections (digits' plain graph: the student agreed with the
graph on 93.9% of val images, 98.9% with the graph's biases). Once the student learns ranges
and weights, the correction computed for the calibrated ones is stale: the biases learn with
them, on the same loss. A bias after a BatchNorm is the BatchNorm's shift (beta): the module
whose input is the convolution's output, found by running it (no names needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper


@dataclass(frozen=True)
class _Slot:
    initializer: str  # the graph's bias initializer
    conv: torch.nn.Conv2d
    norm: torch.nn.BatchNorm2d | None  # the BatchNorm after it, or None (the conv's own bias)


class GraphBiases:
    """Each graph convolution's bias as the student holds it."""

    def __init__(self, student: torch.nn.Module, model: onnx.ModelProto,
                 convs: dict[str, torch.nn.Conv2d], sample: np.ndarray):  # fmt: skip
        initializers = {init.name for init in model.graph.initializer}
        nodes = {node.name: node for node in model.graph.node}
        norms = _norms_after(student, set(convs.values()), sample)
        self.slots: dict[str, _Slot] = {}
        for name, conv in convs.items():
            node, norm = nodes[name], norms.get(conv)
            if len(node.input) < 3 or node.input[2] not in initializers:
                continue  # no bias, or a quantized one (ONNX Runtime's int32 biases)
            if norm is not None and norm.bias is not None and norm.running_var is not None:
                self.slots[name] = _Slot(node.input[2], conv, norm)
            elif norm is None and conv.bias is not None:
                self.slots[name] = _Slot(node.input[2], conv, None)

    def set_from_graph(self, model: onnx.ModelProto) -> int:
        """The student's biases set to the graph's; how many."""
        initializers = {init.name: init for init in model.graph.initializer}
        with torch.no_grad():
            for slot in self.slots.values():
                bias = torch.from_numpy(
                    numpy_helper.to_array(initializers[slot.initializer]).copy()
                )
                if slot.norm is None:
                    assert slot.conv.bias is not None
                    slot.conv.bias.copy_(bias)
                    continue
                shift = _affine(slot)[1]
                assert slot.norm.bias is not None
                slot.norm.bias.copy_(slot.norm.bias + bias.float() - shift)
        return len(self.slots)

    def parameters(self) -> list[torch.Tensor]:
        """The tensors that hold the biases: the BatchNorms' shifts, or the convs' biases."""
        found = [slot.norm.bias if slot.norm is not None else slot.conv.bias
                 for slot in self.slots.values()]  # fmt: skip
        return [p for p in found if p is not None]

    def written(self, model: onnx.ModelProto) -> float:
        """The student's biases written into `model`'s initializers, in place; the largest
        change."""
        initializers = {init.name: init for init in model.graph.initializer}
        moved = 0.0
        for slot in self.slots.values():
            init = initializers[slot.initializer]
            old = numpy_helper.to_array(init)
            if slot.norm is None:
                assert slot.conv.bias is not None
                new = slot.conv.bias.detach().numpy()
            else:
                new = _affine(slot)[1].detach().numpy()
            moved = max(moved, float(np.abs(new - old).max(initial=0.0)))
            init.CopyFrom(numpy_helper.from_array(new.astype(old.dtype), init.name))
        return moved


def _affine(slot: _Slot) -> tuple[torch.Tensor, torch.Tensor]:
    """The BatchNorm after the conv as k * conv(x) + shift: k, and the shift that includes
    the conv's own bias (the graph's folded bias)."""
    norm = slot.norm
    assert norm is not None and norm.running_var is not None and norm.running_mean is not None
    assert norm.weight is not None and norm.bias is not None
    k = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    own = slot.conv.bias if slot.conv.bias is not None else torch.zeros_like(k)
    return k, norm.bias + k * (own - norm.running_mean)


def _norms_after(
    student: torch.nn.Module, convs: set[torch.nn.Conv2d], sample: np.ndarray
) -> dict[torch.nn.Conv2d, torch.nn.BatchNorm2d]:
    """Each convolution's BatchNorm: the module whose input is that convolution's output."""
    outputs: dict[int, tuple[torch.nn.Conv2d, torch.Tensor]] = {}  # kept alive: ids unique
    found: dict[torch.nn.Conv2d, torch.nn.BatchNorm2d] = {}

    def seen(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module in convs:
            outputs[id(output)] = (module, output)
        elif isinstance(module, torch.nn.BatchNorm2d) and id(inputs[0]) in outputs:
            found[outputs[id(inputs[0])][0]] = module

    hooks = [m.register_forward_hook(seen) for m in student.modules()]
    with torch.inference_mode():
        student(torch.from_numpy(sample).float())
    for hook in hooks:
        hook.remove()
    return found
