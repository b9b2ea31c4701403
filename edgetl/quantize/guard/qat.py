"""Quantization-aware fine-tuning of an INT8 graph: the activation ranges of its convolutions'
inputs, the (float) head, the convolutions' biases and INT8 weight values, learned with fake
quantization in PyTorch, written back into the same Q/DQ graph.

The graph is the engine's own (NNCF's PTQ Q/DQ, rewritten for the target): QAT changes the
scales of the Q/DQ pairs that feed convolutions, the integers of the INT8 weights (on the
graph's own per-channel scales: qat_weights.py), the biases (qat_biases.py) and the head's
initializers, nothing else,
so the result has exactly the Q/DQ structure the target already takes (TensorRT's rules
included) and runs at plain INT8's speed, with no float layer. NNCF's PyTorch QAT was
measured first and not used: on first use it compiles a C++ extension (15-48 s here, a
compiler and Python headers on every user's machine) and its ONNX export writes OpenVINO's
FakeQuantize op; stripping that to Q/DQ needs torchao.

Two fits from the same start, the lower held-out loss kept. The ranges, biases and head: an
activation range set by min-max over the calibration images is what one outlier channel
wrecks (a channel at 1e4 that nothing reads leaves every real channel of its tensor at zero),
and what a scale learned on the task's loss fixes. And the weights with them: a layer whose
weights round badly (digits' stem convolution, which the sensitivity report ranks first) is
fixed by moving integers across rounding boundaries; a tiny train set could overfit them,
hence the comparison. The guard then measures the real graph on the target's runtime, so
what PyTorch does not model (the ORT kernels' rounding, the Q/DQ pairs that feed no
convolution: residual adds, the pool) can only cost acceptance, never a wrong promise.

The weights the student starts from are the graph's own INT8 weights, dequantized and
unfolded from BatchNorm (`with_graph_weights`), and its biases the graph's, which NNCF's bias
correction moved off the module's (qat_biases.py). The loss is 0.2 x cross-entropy on the labels
plus the KL divergence to FP32's own predictions (the guard counts the images INT8 gets wrong
where FP32 was right). Early stopping is on held-out training images, as the head
refit's: val decides whether QAT is kept, so it must not also have chosen QAT's epoch. The
backbone runs every epoch (its quantized features change as the ranges learn): nothing is
cached.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import onnx
import torch

from edgetl.core.data.imageset import ImageSet
from edgetl.core.events import say
from edgetl.core.ui import heartbeat, progress
from edgetl.quantize.guard.qat_graph import (
    Quantizer,
    conv_input_quantizers,
    graph_student,
    with_ranges,
)
from edgetl.quantize.guard.qat_weights import learn, weight_slots, written
from edgetl.quantize.guard.refit import REFIT_HELD_OUT, held_out, with_head
from edgetl.train.model import Classifier, Run

QAT_MAX_IMAGES = 1000  # training images QAT fine-tunes on
QAT_STEPS = 400  # optimizer steps at most (digits at 128 px: its best epoch came at ~160)
QAT_MAX_EPOCHS = 30
# Learning INT8 weights makes the held-out loss spiky (digits: 0.19, 0.16, 0.32, 0.26 ...,
# then 0.10 by epoch 9): 3 epochs without a new best stopped it at 0.16
QAT_PATIENCE = 5
RANGE_IMAGES = 16  # training images each candidate range is scored on
QAT_BATCH = 32
SCALE_LR = 2e-3  # on log(scale): a range moves by ~0.2% a step
# Adam on the INT8 convolutions' weights: ~1e-5 a step moves a typical EfficientNet weight
# (|w| ~ 0.05, per-channel step s ~ 4e-4) across a rounding boundary in tens of steps
WEIGHT_LR = 1e-5
# Adam on the biases: ~3e-4 a step, at most ~0.12 over QAT's 400 steps. NNCF's bias
# correction of digits' graph moved each convolution's biases by up to 0.018 (median over
# convolutions), 0.20 (90th percentile), 0.36 (largest); their mean size is 1.4
BIAS_LR = 3e-4
HEAD_LR_SHARE = 0.1  # of the run's head learning rate: the head is warm, not re-trained
KD_TEMPERATURE = 2.0


class Qat:
    """Quantization-aware fine-tuning of the run's model for an INT8 graph of it."""

    def __init__(self, run: Run, train: ImageSet):
        train = train.sample(QAT_MAX_IMAGES, run.seed)
        with heartbeat(f"QAT: decoding {len(train)} training images"):
            self.images = np.concatenate(
                [b.astype(np.float16) for b, _ in train.batches(run.preprocess, 64)]
            )
        self.labels = torch.from_numpy(train.labels)
        self.run = run

    def apply(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """`model` (an INT8 Q/DQ graph of the run) with learned input ranges and head."""
        quantizers = conv_input_quantizers(model)
        torch.manual_seed(self.run.seed)
        graph = graph_student(self.run, model, self.images[:1])
        student, convs, unfolding = graph.model, graph.convs, graph.unfolding
        slots = {n: slot for n, slot in weight_slots(model).items() if n in unfolding}
        weight_scales = {n: slot.scale / unfolding[n] for n, slot in slots.items()}
        readers: dict[str, list[torch.nn.Conv2d]] = {}
        for name, quantizer in quantizers.items():
            readers.setdefault(quantizer.key, []).append(convs[name])
        unique = {q.key: q for q in quantizers.values()}
        with heartbeat(f"QAT: where each of {len(unique)} activation ranges starts"):
            start = _initial_ranges(student, unique, readers, self.images[:RANGE_IMAGES])
        scales = {key: torch.nn.Parameter(torch.tensor(np.log(scale), dtype=torch.float32))
                  for key, (scale, _) in start.items()}  # fmt: skip
        hooks = [
            conv.register_forward_pre_hook(_fake_quant(unique[key], scales[key], start[key][1]))
            for key, modules in readers.items()
            for conv in modules
        ]
        head_written = _head_is_float(model, student)
        weights = learn({n: convs[n] for n in slots}, weight_scales)
        try:
            kept_weights = self._fit(student, scales, weights, graph.biases.parameters(),
                                     train_head=head_written)  # fmt: skip
        finally:
            for hook in hooks:
                hook.remove()
        learned = {key: (float(torch.exp(scales[key].detach())), start[key][1]) for key in unique}
        moved = [abs(np.log(learned[key][0] / q.scale)) for key, q in unique.items()]
        result = with_ranges(model, unique, learned)
        biased = graph.biases.written(result)
        if kept_weights:
            changed = written(result, slots, {n: convs[n] for n in slots}, weight_scales)
            weighted = f"{changed} INT8 weight values of {len(slots)} convolutions moved"
        else:
            weighted = "the INT8 weights as calibrated (learning them lowered no held-out loss)"
        say(f"  QAT: {len(learned)} activation ranges learned (median change "
            f"{100 * (np.exp(np.median(moved)) - 1):.1f}%, largest "
            f"{np.exp(max(moved, default=0.0)):.3g}x), {len(graph.biases.slots)} biases "
            f"(largest change {biased:.3g}), the head; {weighted}")  # fmt: skip
        return with_head(result, student.head) if head_written else result

    def _fit(
        self,
        student: Classifier,
        scales: dict[str, torch.nn.Parameter],
        weights: list[torch.Tensor],
        biases: list[torch.Tensor],
        train_head: bool,
    ) -> bool:
        """Two fits from the same start, the lower held-out loss kept: the ranges, biases
        and head alone, and the INT8 weights with them (a tiny train set can overfit integer
        weights; on digits they took the held-out loss from 0.28 to 0.10). Returns
        whether the weights were kept."""
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
        for bias in biases:
            bias.requires_grad_(True)
        groups: list[dict] = [{"params": list(scales.values()), "lr": SCALE_LR},
                              {"params": biases, "lr": BIAS_LR}]  # fmt: skip
        if train_head:
            head_lr = self.run.info.train.lr * HEAD_LR_SHARE
            groups.append({"params": list(student.head.parameters()), "lr": head_lr})
        else:  # a recipe that quantizes the head: its weights stay as the graph has them
            student.head.requires_grad_(False)
        loss_of = _loss(images, self.labels, soft)
        held = _Held(loss_of, stop, student, scales, [*weights, *biases])
        start = held.state()
        ranged = self._phase("QAT: ranges, biases and head", groups, fit, held)
        if not weights:
            return False
        alone = held.state()
        held.restore(start)
        for weight in weights:  # the INT8 convolutions' weights (qat_weights.py) learn too
            weight.requires_grad_(True)
        both = self._phase("QAT: with the INT8 weights", [*groups, {"params": weights,
                           "lr": WEIGHT_LR}], fit, held)  # fmt: skip
        if both < ranged:
            return True
        held.restore(alone)
        return False

    def _phase(self, what: str, groups: list[dict], fit: torch.Tensor, held: _Held) -> float:
        """Adam on `groups` from the student's state, early-stopped on the held-out loss;
        the student left at its best epoch; that loss."""
        optimizer = torch.optim.Adam(groups)
        best = held.loss()
        best_state, waited = held.state(), 0
        epochs = min(QAT_MAX_EPOCHS, -(-QAT_STEPS // max(1, -(-len(fit) // QAT_BATCH))))
        with progress() as bar:
            task = bar.add_task(what, total=epochs, info=f"held-out loss {best:.4f}")
            for _ in range(epochs):
                order = fit[torch.randperm(len(fit))]
                for start in range(0, len(order), QAT_BATCH):
                    loss = held.loss_of(held.student, order[start : start + QAT_BATCH], True)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                loss_now = held.loss()
                bar.update(task, advance=1, info=f"held-out loss {loss_now:.4f}")
                if loss_now < best:
                    best, best_state, waited = loss_now, held.state(), 0
                else:
                    waited += 1
                    if waited >= QAT_PATIENCE:
                        break
        held.restore(best_state)
        return best


class _Held:
    """The held-out loss of the student, and its trainable state to keep and restore."""

    def __init__(self, loss_of: Callable[..., torch.Tensor], stop: torch.Tensor,
                 student: Classifier, scales: dict[str, torch.nn.Parameter],
                 weights: list[torch.Tensor]):  # fmt: skip
        self.loss_of, self.stop, self.student = loss_of, stop, student
        self.scales, self.weights = scales, weights

    def loss(self) -> float:
        return float(self.loss_of(self.student, self.stop).detach())

    def state(self) -> dict:
        return _state(self.student, self.scales, self.weights)

    def restore(self, state: dict) -> None:
        _restore(self.student, self.scales, self.weights, state)


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


def _state(
    student: Classifier, scales: dict[str, torch.nn.Parameter], weights: list[torch.Tensor]
) -> dict:
    return {"head": copy.deepcopy(student.head.state_dict()),
            "scales": {k: v.detach().clone() for k, v in scales.items()},
            "weights": [w.detach().clone() for w in weights]}  # fmt: skip


def _restore(
    student: Classifier,
    scales: dict[str, torch.nn.Parameter],
    weights: list[torch.Tensor],
    state: dict,
) -> None:
    student.head.load_state_dict(state["head"])
    with torch.no_grad():
        for key, value in scales.items():
            value.copy_(state["scales"][key])
        for weight, kept in zip(weights, state["weights"], strict=True):
            weight.copy_(kept)


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
