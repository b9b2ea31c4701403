"""What every backend's runner offers to parity checks and the benchmark."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    """A loaded, ready-to-run model: one batch of preprocessed images in, logits out."""

    batch_size: int | None  # fixed batch size of the compiled model, None when dynamic

    def run(self, images: np.ndarray) -> np.ndarray: ...


def run_all(runner: Runner, images: np.ndarray) -> np.ndarray:
    """Logits for any number of images, in the batch sizes the runner accepts."""
    step = runner.batch_size or 32
    return np.concatenate([runner.run(images[i : i + step]) for i in range(0, len(images), step)])
