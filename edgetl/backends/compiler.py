"""The host-side contract: what compiles an ONNX graph into a runtime's model files, and runs
a graph in memory (a guard candidate, a host check). Polygraphy's loaders to base.py's
runners: only export and search import it, so the device never needs onnx."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgetl.backends.base import Runner, Runtime

if TYPE_CHECKING:
    import onnx

    from edgetl.core.targets import Precision, TargetProfile


@dataclass(frozen=True)
class CompileInput:
    """What a compiler compiles: the graph for the precision, and for INT8 the FP32 graph it
    was quantized from (TensorRT's DLA route ships it with a calibration cache)."""

    onnx: Path
    precision: Precision
    fp32_onnx: Path | None = None
    # For a compiler that starts from PyTorch (ExecuTorch): the model, one input image, and
    # for INT8 the calibration images its own quantizer observes
    torch_model: Any = None
    example: np.ndarray | None = None
    calibration: np.ndarray | None = None
    float_modules: tuple[str, ...] = ()  # module-name patterns its quantizer leaves float


class Compiler(ABC):
    """One runtime's host side, registered under the runtime's name (registry.py)."""

    name: ClassVar[str]
    # Whether the artifact carries edgetl's own wheel: a device that installs edgetl from
    # the artifact (a Jetson, whose package index has no edgetl) gets the very one that made it.
    ships_wheel: ClassVar[bool] = False
    # Whether INT8 is the compiler's own (from the PyTorch model, e.g. PT2E), not the
    # guard's Q/DQ ONNX graph: the export judges its artifact by the guard's rule instead.
    quantizes_itself: ClassVar[bool] = False

    def __init__(self, runtime: Runtime):
        self.runtime = runtime  # the device side of the same name: its options, its runner

    def options(self, profile: TargetProfile) -> Any:
        """The runtime's settings from the profile (EdgetlError naming a bad key)."""
        return self.runtime.options(profile.options, profile.source)

    @abstractmethod
    def compile(self, graph: CompileInput, out_dir: Path, profile: TargetProfile) -> list[str]:
        """Write the model files for `profile` into `out_dir`; returns their names."""

    @abstractmethod
    def load_onnx(self, model: onnx.ModelProto, profile: TargetProfile) -> Runner:
        """An in-memory ONNX model (a quantization candidate) on this runtime."""

    def host_checks(
        self, out_dir: Path, precision: str, profile: TargetProfile
    ) -> list[tuple[str, Path, str]]:
        """Other graphs in the artifact that a device may run, to check on the host at
        export: (what, file, the profile's parity key). None by default."""
        return []

    def rewrite_int8(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """This runtime's own lossless rewrites of a QDQ graph (none by default)."""
        return model
