"""TensorRT's settings: the [tensorrt] table of a target profile, stored in the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgetl.backends.base import BackendOptions
from edgetl.core.targets import Parity


@dataclass(frozen=True)
class TensorRtOptions(BackendOptions):
    # The releases the bundle is for (the calibration cache's header is the first 10.x;
    # `edgetl build` rewrites it for the TensorRT it finds).
    tensorrt_versions: list[str] = field(default_factory=list)
    workspace_mb: int = 1024  # the builder's workspace memory pool
    dla_core: int = -1  # -1: the GPU only; else that DLA core, with GPU fallback
    module: str | None = None  # the Jetson module (or discrete-gpu) the profile is for
    # `edgetl build` on the device: the engine against the host proxy's logits of the same
    # graph on the reference set, per precision.
    device_parity: dict[str, Parity] = field(default_factory=dict)

    @property
    def majors(self) -> list[int]:
        """The TensorRT majors the bundle is for, sorted."""
        return sorted({int(v.split(".")[0]) for v in self.tensorrt_versions})
