"""OpenVINO's settings: the [openvino] table of a target profile, stored in the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgetl.backends.base import BackendOptions


@dataclass(frozen=True)
class OpenVinoOptions(BackendOptions):
    hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] = "LATENCY"  # PERFORMANCE_HINT
    streams: int | None = None  # NUM_STREAMS; None: the hint decides (1 for LATENCY)
    model_cache: bool = False  # CACHE_DIR: compiled blobs reused between runs
    static_shape: bool = False  # reshape to batch 1 at export (the NPU compiles static shapes)
    # INFERENCE_PRECISION_HINT, e.g. "f32": FP32 math on CPUs that would pick bf16.
    inference_precision: str | None = None

    def config(self, threads: int, cache_dir: Path | None) -> dict[str, Any]:
        """OpenVINO properties: performance hint, threads, streams, precision, model cache."""
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.hint}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        if self.streams is not None:
            config["NUM_STREAMS"] = str(self.streams)
        if self.inference_precision is not None:
            config["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        return config
