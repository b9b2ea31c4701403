"""The teacher-transfer attack: adversarial images built with public information only.

The attacker has what any edgetl user's backbone is: a public pretrained model (the same
weights, from the same package or hub), and labelled images of the task's classes. They fit
a head of their own (a logistic regression on the public features), and run PGD (L-inf,
from the Adversarial Robustness Toolbox) through public backbone + their head. The user's
head and any fine-tuned backbone stage are never read: what the attack does to the user's
model is what that model inherited from its teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgetl.core.data.imageset import ImageSet
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.files import sha256_file
from edgetl.core.preprocess import Preprocess
from edgetl.core.records import RunInfo
from edgetl.core.ui import heartbeat
from edgetl.train.backbones import Backbone, load_backbone

SURROGATE_IMAGES = 1000  # the attacker's labelled images, at most (a stratified sample)
BATCH = 32


@dataclass(frozen=True)
class Attack:
    """How the adversarial images are made: PGD (iterated) or FGSM (one step of eps)."""

    method: str  # "pgd" | "fgsm"
    epsilons: tuple[float, ...]  # in 1/255 of the pixel range
    steps: int = 10  # PGD only
    step_fraction: float = 0.25  # PGD: each step moves eps x this (the ball's edge in 4)

    def describe(self) -> str:
        if self.method == "fgsm":
            return "FGSM (Adversarial Robustness Toolbox), L-inf, one step of eps, untargeted"
        return (f"PGD (Adversarial Robustness Toolbox), L-inf, {self.steps} steps of "
                f"{self.step_fraction:g} x eps, no random start, untargeted")  # fmt: skip

    def at(self, classifier: Any, epsilon: float) -> Any:
        """The ART attack at one epsilon."""
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

        eps = epsilon / 255
        if self.method == "fgsm":
            return FastGradientMethod(classifier, eps=eps, batch_size=BATCH)
        return ProjectedGradientDescent(classifier, eps=eps, eps_step=eps * self.step_fraction,
                                        max_iter=self.steps, batch_size=BATCH,
                                        verbose=False)  # fmt: skip


def public_backbone(info: RunInfo) -> Backbone:
    """The run's backbone as published: the weights it started from (package, file or hub),
    checked against the sha256 the run recorded, never the run's own backbone file."""
    recorded = info.backbone
    source = recorded.weights_source
    weights = Path(source.removeprefix("file:")) if source.startswith("file:") else None
    backbone = load_backbone(recorded.name, weights, info.preprocess.size)
    if backbone.weights_sha256 != recorded.weights_sha256:
        raise EdgetlError(
            f"the public weights of {recorded.name} ({source}) are not the ones the run "
            "started from (sha256 differs); restore them to craft the attack"
        )
    return backbone


def fit_surrogate(backbone: Backbone, images: ImageSet, classes: int) -> tuple[nn.Linear, float]:
    """The attacker's head: logistic regression on the public backbone's pooled features of
    `images`; a linear layer on raw features, and its top-1 on those images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    with heartbeat(f"attack: public features of {len(images)} images"):
        features = _features(backbone.model, images.arrays(backbone.preprocess))
    scaler = StandardScaler().fit(features)
    fitted = LogisticRegression(max_iter=2000).fit(scaler.transform(features), images.labels)
    coef = fitted.coef_ / scaler.scale_
    bias = fitted.intercept_ - coef @ scaler.mean_
    if coef.shape[0] == 1:  # two classes: sklearn's one logit as a symmetric pair
        coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    if coef.shape[0] != classes:
        raise EdgetlError(f"the attacker's images hold {coef.shape[0]} classes of {classes}; "
                          "every class needs labelled images")  # fmt: skip
    head = nn.Linear(coef.shape[1], classes)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef).float())
        head.bias.copy_(torch.from_numpy(bias).float())
    return head.eval(), float(fitted.score(scaler.transform(features), images.labels))


def craft(
    backbone: Backbone, head: nn.Linear, pixels: np.ndarray, labels: np.ndarray, attack: Attack
) -> np.ndarray:
    """(E, N, 3, S, S) uint8: `pixels` under the attack at each epsilon through backbone +
    head, rounded to whole pixel values within the epsilon ball."""
    from art.estimators.classification import PyTorchClassifier

    model = nn.Sequential(backbone.model, head).eval()
    pre = backbone.preprocess
    classifier = PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=pixels.shape[1:],
        nb_classes=head.out_features, clip_values=(0.0, 1.0),
        preprocessing=(_channels(pre.mean), _channels(pre.std)),
    )  # fmt: skip
    clean = pixels.astype(np.float32) / 255.0
    found = []
    for epsilon in attack.epsilons:
        with heartbeat(f"attack: {attack.method} at {epsilon:g}/255 on {len(pixels)} images"):
            adversarial = attack.at(classifier, epsilon).generate(
                clean, y=np.eye(head.out_features)[labels]
            )
        found.append(_to_pixels(adversarial, pixels, epsilon))
        say(f"attack: {epsilon:g}/255 crafted")
    return np.stack(found)


def _to_pixels(adversarial: np.ndarray, pixels: np.ndarray, epsilon: float) -> np.ndarray:
    """Whole pixel values, never further from the clean ones than epsilon (in 1/255)."""
    rounded = np.rint(adversarial * 255.0)
    low, high = pixels.astype(np.float64) - epsilon, pixels.astype(np.float64) + epsilon
    return np.clip(np.clip(rounded, np.ceil(low), np.floor(high)), 0, 255).astype(np.uint8)


def scratch_top1(
    run: Path, info: RunInfo, images: list[np.ndarray], labels: np.ndarray, pre: Preprocess
) -> list[float] | None:
    """Top-1 of the run's --scratch-baseline model on each of `images` (uint8 sets), or None
    when the run kept none (trained without --scratch-baseline)."""
    from safetensors.torch import load_file

    from edgetl.train.scratch import SCRATCH_WEIGHTS, small_cnn

    path = run / SCRATCH_WEIGHTS
    if not path.is_file() or info.weights.get(SCRATCH_WEIGHTS) != sha256_file(path):
        return None
    model = small_cnn(len(info.classes))
    model.load_state_dict(load_file(str(path)))
    model.eval()
    found = []
    for pixels in images:
        logits = _features(model, pre.normalize(pixels))
        found.append(float((logits.argmax(-1) == labels).mean()))
    return found


def _features(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(images[i : i + BATCH])).numpy()
                               for i in range(0, len(images), BATCH)])  # fmt: skip


def _channels(values: tuple[float, ...] | list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(3, 1, 1)
