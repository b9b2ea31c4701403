"""The head refit: the backbone is frozen, so the head can be re-trained on features of the
*quantized* backbone (warm-started from the run's head) and written back into the INT8 graph.

The ONNX surgery lives here too: cutting the graph at the head's input (`features_model`)
and replacing the head's float initializers (`with_head`).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from edgetl.core.data.imageset import ImageSet
from edgetl.core.errors import EdgetlError
from edgetl.core.ui import heartbeat
from edgetl.quantize import qdq
from edgetl.quantize.guard.evaluator import Evaluator, run_float16
from edgetl.train.loop import HeadTraining, train_head
from edgetl.train.model import Run

REFIT_MAX_IMAGES = 2000  # training images whose quantized features re-fit the head
# The share of them held out for early stopping: val decides whether the refit is kept, so
# it must not also have chosen the refit's epoch (its val drop would then be biased low).
REFIT_HELD_OUT = 0.15


class HeadRefit:
    """Re-train the run's head on features of a quantized backbone and write it into the graph."""

    def __init__(self, run: Run, train: ImageSet, evaluator: Evaluator):
        train = train.sample(REFIT_MAX_IMAGES, run.seed)
        # float16 halves the memory (2000 images at 224 px: 0.6 GB); runners get float32.
        self.train_images = np.concatenate(
            [b.astype(np.float16) for b, _ in train.batches(run.preprocess, 64)]
        )
        self.train_labels = train.labels
        self.run = run
        self.evaluator = evaluator

    def apply(self, model: onnx.ModelProto) -> onnx.ModelProto:
        count = len(self.train_images)
        with heartbeat(f"head refit: the INT8 backbone's features of {count} images"):
            features = self.evaluator.load(features_model(model))
            x = torch.from_numpy(run_float16(features, self.train_images))
        y = torch.from_numpy(self.train_labels)
        fit, stop = held_out(len(y), REFIT_HELD_OUT, self.run.seed)
        head = self.run.head()
        head.set_feature_stats(x[fit])
        info = self.run.info.train
        settings = HeadTraining(info.epochs, info.lr, info.batch_size, info.seed, info.patience)
        train_head(head, x[fit], y[fit], x[stop], y[stop], settings)
        return with_head(model, head)


def held_out(n: int, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded split of n indices: (to fit on, to early-stop on)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = max(1, int(round(n * share)))
    return order[cut:], order[:cut]


def features_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with the head's input (backbone features) as its only output."""
    consumer = next((n for n in model.graph.node if "head.feature_mean" in n.input), None)
    if consumer is None:
        raise EdgetlError("head refit: no head.feature_mean in the graph; not an edgetl model")
    feature = next(name for name in consumer.input if name != "head.feature_mean")
    result = qdq.copy_model(model)
    del result.graph.output[:]
    result.graph.output.append(
        onnx.helper.make_tensor_value_info(feature, onnx.TensorProto.FLOAT, None)
    )
    return qdq.prune(result)


def with_head(model: onnx.ModelProto, head: torch.nn.Module) -> onnx.ModelProto:
    result = qdq.copy_model(model)
    initializers = {init.name: init for init in result.graph.initializer}
    for key, value in head.state_dict().items():
        name = f"head.{key}"
        if name not in initializers:
            raise EdgetlError(
                f"head refit: {name} is not a float initializer of the INT8 graph; not an "
                "edgetl model"
            )
        initializers[name].CopyFrom(onnx.numpy_helper.from_array(value.numpy(), name))
    return result
