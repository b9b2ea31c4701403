"""The device-side contract: a runtime that loads an artifact's model files and runs them.

Modelled on Polygraphy's runners (its loaders are compiler.py, host side): a runtime is small,
imports its package lazily (the device has only the runtime it uses), and never imports onnx;
comparing outputs is kept apart (core/measures/parity.py).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields, write_fields
from edgetl.core.records import RuntimeSpec


class Runner(Protocol):
    """A loaded, ready-to-run model: one batch of preprocessed images in, logits out."""

    batch_size: int | None  # fixed batch size of the compiled model, None when dynamic

    def run(self, images: np.ndarray) -> np.ndarray: ...


class NamedRunner(Runner, Protocol):
    """A runner whose model has several outputs (a detector: boxes and scores)."""

    def named(self, images: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class PlacedOps:
    """`count` ops of type `op` that the runtime runs on `where` (an execution provider, a
    delegate, a plugin) in `precision`: `edgetl inspect`'s op placement, one row."""

    op: str
    where: str
    precision: str
    count: int


@dataclass(frozen=True)
class BackendOptions:
    """A backend's own settings: the profile's table named after the backend ([openvino],
    [tensorrt]), stored in the manifest as `runtime_options`. Subclasses add fields; the
    fields are the schema (an unknown key is an error naming it)."""

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)


class Runtime(ABC):
    """One runtime on the device side. Subclasses are registered by name in
    edgetl/backends/registry.py, beside the host-side Compiler of the same name."""

    name: ClassVar[str]
    module: ClassVar[str]  # the runtime's Python module
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    # A device of this runtime that can stand in at export when the target's is absent:
    # set where the compiled model is device-independent (OpenVINO IR), else None.
    host_device: ClassVar[str | None] = None

    def available(self) -> bool:
        """Whether the runtime is installed: its module found, with code (not only the .pyi
        files a stubs package puts in a directory of the same name)."""
        spec = importlib.util.find_spec(self.module)
        return spec is not None and spec.origin is not None

    def options(self, table: Mapping[str, Any], where: str) -> Any:
        """This backend's settings from its profile table (or a manifest's runtime_options);
        EdgetlError naming `where` and the key when one is unknown or of the wrong type."""
        return read_fields(self.Options, table, Source(f"{where} [{self.name}]"))

    @abstractmethod
    def runtime_version(self) -> str: ...

    @abstractmethod
    def check_device(self, device: str) -> None:
        """EdgetlError naming the devices present when `device` is absent."""

    @abstractmethod
    def load(self, model_dir: Path, spec: RuntimeSpec) -> Runner:
        """A runner for model files compiled earlier."""

    def artifact_notes(self, model_dir: Path) -> list[str]:
        """What a bench report says of the artifact's compiled form (ExecuTorch: which ops
        its delegate took). Nothing by default."""
        return []

    # op_placement loads the model with the runtime here; False: it reads a record the
    # device wrote (TensorRT's engine record), so no runtime is needed to show it
    placement_needs_runtime = True

    def op_placement(self, model_dir: Path, spec: RuntimeSpec) -> list[PlacedOps]:
        """Which ops the runtime runs where and in which precision, as loaded here (the
        silent-fallback question). Runtimes that cannot say raise EdgetlError saying why."""
        raise EdgetlError(f"{self.name}: no op placement report for this runtime here")


class Loaded:
    """An artifact loaded with its runner: the runtime's resources freed by close() (a
    TensorRT engine's context and buffers, where the runner holds any), or on leaving a
    `with` block."""

    runner: Any

    def close(self) -> None:
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_all(runner: Runner, images: np.ndarray) -> np.ndarray:
    """Logits for any number of images, in the batch sizes the runner accepts."""
    step = runner.batch_size or 32
    return np.concatenate([runner.run(images[i : i + step]) for i in range(0, len(images), step)])
