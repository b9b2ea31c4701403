"""Quantization-aware fine-tuning of an INT8 graph: the activation ranges of its convolutions'
inputs and the (float) head, learned with fake quantization in PyTorch, written back into the
same Q/DQ graph.

The graph is the engine's own (NNCF's PTQ Q/DQ, rewritten for the target): QAT changes the
scales of the Q/DQ pairs that feed convolutions and the head's initializers, nothing else,
so the result has exactly the Q/DQ structure the target already takes (TensorRT's rules
included) and runs at plain INT8's speed, with no float layer. NNCF's PyTorch QAT was
measured first and not used: on first use it compiles a C++ extension (15-48 s here, a
compiler and Python headers on every user's machine) and its ONNX export writes OpenVINO's
FakeQuantize op; stripping that to Q/DQ needs torchao.

What is learned, and why only that: the backbone is frozen (its weights, and so their
per-channel INT8 scales, stay as calibrated); an activation range set by min-max over the
calibration images is what one outlier channel wrecks (a channel at 1e4 that nothing reads
leaves every real channel of its tensor at zero), and what a scale learned on the task's loss
fixes. The guard then measures the real graph on the target's runtime, so what PyTorch does
not model (the ORT kernels' rounding, NNCF's bias correction) can only cost acceptance, never
a wrong promise.

The weights the student computes with are the graph's own INT8 weights, dequantized and
unfolded from BatchNorm (`_with_graph_weights`). The loss is 0.2 x cross-entropy on the labels
plus the KL divergence to FP32's own predictions (the guard counts the images INT8 gets wrong
where FP32 was right). Early stopping is on held-out training images, as the head
refit's: val decides whether QAT is kept, so it must not also have chosen QAT's epoch. The
backbone runs every epoch (its quantized features change as the ranges learn): nothing is
cached (the features of a frozen backbone under fixed fake quantization could be; here the
ranges are what trains).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edgetl.core.data.imageset import ImageSet
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.ui import progress
from edgetl.quantize import qdq
from edgetl.quantize.guard.refit import REFIT_HELD_OUT, held_out, with_head
from edgetl.train.model import Classifier, Run

QAT_MAX_IMAGES = 1000  # training images QAT fine-tunes on
QAT_STEPS = 400  # optimizer steps at most (digits at 128 px: its best epoch came at ~160)
QAT_MAX_EPOCHS = 30
QAT_PATIENCE = 3
RANGE_STEPS = 29  # candidate ranges per quantizer, from the calibrated one down to 2^-14 of it
RANGE_IMAGES = 16  # training images each candidate range is scored on
QAT_BATCH = 32
SCALE_LR = 2e-3  # on log(scale): a range moves by ~0.2% a step
HEAD_LR_SHARE = 0.1  # of the run's head learning rate: the head is warm, not re-trained
KD_TEMPERATURE = 2.0


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


class Qat:
    """Quantization-aware fine-tuning of the run's model for an INT8 graph of it."""

    def __init__(self, run: Run, train: ImageSet):
        train = train.sample(QAT_MAX_IMAGES, run.seed)
        self.images = np.concatenate(
            [b.astype(np.float16) for b, _ in train.batches(run.preprocess, 64)]
        )
        self.labels = torch.from_numpy(train.labels)
        self.run = run

    def apply(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """`model` (an INT8 Q/DQ graph of the run) with learned input ranges and head."""
        quantizers = conv_input_quantizers(model)
        torch.manual_seed(self.run.seed)
        student = self.run.classifier()
        convs = _aligned_convs(student, model, self.images[:1])
        _with_graph_weights(model, convs)
        readers: dict[str, list[torch.nn.Conv2d]] = {}
        for name, quantizer in quantizers.items():
            readers.setdefault(quantizer.key, []).append(convs[name])
        unique = {q.key: q for q in quantizers.values()}
        start = _initial_ranges(student, unique, readers, self.images[:RANGE_IMAGES])
        scales = {key: torch.nn.Parameter(torch.tensor(np.log(scale), dtype=torch.float32))
                  for key, (scale, _) in start.items()}  # fmt: skip
        hooks = [
            conv.register_forward_pre_hook(_fake_quant(unique[key], scales[key], start[key][1]))
            for key, modules in readers.items()
            for conv in modules
        ]
        head_written = _head_is_float(model, student)
        try:
            self._fit(student, scales, train_head=head_written)
        finally:
            for hook in hooks:
                hook.remove()
        learned = {key: (float(torch.exp(scales[key].detach())), start[key][1]) for key in unique}
        moved = [abs(np.log(learned[key][0] / q.scale)) for key, q in unique.items()]
        say(f"  QAT: {len(learned)} activation ranges learned (median change "
            f"{100 * (np.exp(np.median(moved)) - 1):.1f}%, largest "
            f"{np.exp(max(moved, default=0.0)):.3g}x) and the head")  # fmt: skip
        result = _with_ranges(model, unique, learned)
        return with_head(result, student.head) if head_written else result

    def _fit(
        self, student: Classifier, scales: dict[str, torch.nn.Parameter], train_head: bool
    ) -> None:
        teacher = self.run.classifier()
        images = torch.from_numpy(self.images)
        with torch.inference_mode():
            soft = torch.cat(
                [teacher(images[i : i + 64].float()) for i in range(0, len(images), 64)]
            )
        fit, stop = held_out(len(images), REFIT_HELD_OUT, self.run.seed)
        for parameter in student.backbone.parameters():
            parameter.requires_grad_(False)
        student.eval()  # BatchNorm as in the graph (folded, fixed); dropout off
        head_lr = self.run.info.train.lr * HEAD_LR_SHARE
        groups: list[dict] = [{"params": list(scales.values()), "lr": SCALE_LR}]
        if train_head:
            groups.append({"params": list(student.head.parameters()), "lr": head_lr})
        else:  # a recipe that quantizes the head: its weights stay as the graph has them
            student.head.requires_grad_(False)
        optimizer = torch.optim.Adam(groups)
        loss_of = _loss(images, self.labels, soft)
        best = float(loss_of(student, stop).detach())
        best_state, waited = _state(student, scales), 0
        epochs = min(QAT_MAX_EPOCHS, -(-QAT_STEPS // max(1, -(-len(fit) // QAT_BATCH))))
        with progress() as bar:
            task = bar.add_task("QAT", total=epochs, info=f"held-out loss {best:.4f}")
            for _ in range(epochs):
                order = fit[torch.randperm(len(fit))]
                for start in range(0, len(order), QAT_BATCH):
                    batch = order[start : start + QAT_BATCH]
                    loss = loss_of(student, batch, train=True)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                held = float(loss_of(student, stop).detach())
                bar.update(task, advance=1, info=f"held-out loss {held:.4f}")
                if held < best:
                    best, best_state, waited = held, _state(student, scales), 0
                else:
                    waited += 1
                    if waited >= QAT_PATIENCE:
                        break
        _restore(student, scales, best_state)


def _head_is_float(model: onnx.ModelProto, student: Classifier) -> bool:
    """Whether the graph holds the head's weights as float initializers (with_head can write
    them); a recipe that quantizes the head does not."""
    names = {init.name for init in model.graph.initializer}
    return all(f"head.{key}" in names for key in student.head.state_dict())


def _loss(
    images: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor
) -> Callable[..., torch.Tensor]:
    def loss_of(student: torch.nn.Module, index: torch.Tensor, train: bool = False) -> torch.Tensor:
        with torch.set_grad_enabled(train):
            logits = student(images[index].float())
            hard = torch.nn.functional.cross_entropy(logits, labels[index])
            t = KD_TEMPERATURE
            kd = torch.nn.functional.kl_div(
                torch.log_softmax(logits / t, 1), torch.softmax(soft[index] / t, 1),
                reduction="batchmean",
            ) * t * t  # fmt: skip
            return 0.2 * hard + kd

    return loss_of


def _state(student: Classifier, scales: dict[str, torch.nn.Parameter]) -> dict:
    return {"head": copy.deepcopy(student.head.state_dict()),
            "scales": {k: v.detach().clone() for k, v in scales.items()}}  # fmt: skip


def _restore(student: Classifier, scales: dict[str, torch.nn.Parameter], state: dict) -> None:
    student.head.load_state_dict(state["head"])
    with torch.no_grad():
        for key, value in scales.items():
            value.copy_(state["scales"][key])


def _fake_quant(quantizer: Quantizer, log_scale: torch.Tensor, zero_point: int) -> Callable:
    """A forward pre-hook: the module's input fake-quantized on the learnable scale (the
    rounding's gradient passed straight through, LSQ's way)."""
    zero, low, high = float(zero_point), float(quantizer.low), float(quantizer.high)

    def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        scale = torch.exp(log_scale)
        x = inputs[0] / scale + zero
        q = torch.clamp(x + (torch.round(x) - x).detach(), low, high)
        return ((q - zero) * scale,)

    return hook


def conv_input_quantizers(model: onnx.ModelProto) -> dict[str, Quantizer]:
    """Conv node name -> the Q/DQ pair its input comes through (convolutions with a float
    input are left out)."""
    producer = {out: node for node in model.graph.node for out in node.output}
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


def _aligned_convs(
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
    producer = {out: node for node in model.graph.node for out in node.output}
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


def _with_graph_weights(model: onnx.ModelProto, convs: dict[str, torch.nn.Conv2d]) -> None:
    """Each convolution's weights replaced by the graph's INT8 weights, dequantized: the graph
    holds them with BatchNorm folded in (w * k per output channel, k = gamma / sqrt(var +
    eps)), so they are unfolded by k, found per channel by least squares against the module's
    own weights (no BatchNorm needs naming). The student then computes with the very weights
    the target runs; only the activation ranges and the head are left to learn."""
    producer = {out: node for node in model.graph.node for out in node.output}
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


def _initial_ranges(
    student: Classifier,
    quantizers: dict[str, Quantizer],
    readers: dict[str, list[torch.nn.Conv2d]],
    images: np.ndarray,
) -> dict[str, tuple[float, int]]:
    """Each quantizer's starting (scale, zero point): of its candidate ranges, the one whose
    fake-quantized input changes the convolutions reading it least (their outputs' squared
    error on a few training images). The tensor's own error would keep an outlier channel
    nothing reads; the convolutions' outputs do not see it."""
    seen: dict[torch.nn.Conv2d, torch.Tensor] = {}
    modules = {conv for convs in readers.values() for conv in convs}
    hooks = [conv.register_forward_pre_hook(lambda m, i: seen.__setitem__(m, i[0].detach()))
             for conv in modules]  # fmt: skip
    with torch.inference_mode():
        student(torch.from_numpy(images).float())
    for hook in hooks:
        hook.remove()
    chosen = {}
    with torch.inference_mode():
        for key, quantizer in quantizers.items():
            exact = [(conv, seen[conv], conv(seen[conv])) for conv in readers[key]]
            errors = []
            for scale, zero in quantizer.candidates():
                fake = _fake_quant(quantizer, torch.tensor(np.log(scale)), zero)
                errors.append(sum(float(((conv(fake(conv, (x,))[0]) - y) ** 2).mean())
                                  for conv, x, y in exact))  # fmt: skip
            chosen[key] = quantizer.candidates()[int(np.argmin(errors))]
    return chosen


def _with_ranges(
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
