"""ONNX Runtime on the CPU: the artifact is the ONNX file itself."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgetl.errors import EdgetlError
from edgetl.targets import TargetProfile

NAME = "onnxruntime"
MODEL_FILE = "model.onnx"


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def runtime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def check_device(device: str) -> None:
    if device != "CPU":
        raise EdgetlError(f"device {device!r}: the onnxruntime backend here runs on CPU only")


def compile(onnx_path: Path, out_dir: Path, profile: TargetProfile, precision: str) -> list[str]:
    if onnx_path != out_dir / MODEL_FILE:
        shutil.copyfile(onnx_path, out_dir / MODEL_FILE)
    return [MODEL_FILE]


class OrtRunner:
    def __init__(self, model: Path | bytes, threads: int):
        """`model` is a file or a serialized ModelProto (the quantizer evaluates in memory)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            model if isinstance(model, bytes) else str(model),
            options,
            providers=["CPUExecutionProvider"],
        )
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        batch = model_input.shape[0]
        self.batch_size = batch if isinstance(batch, int) else None

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]


def load_onnx(model: onnx.ModelProto, profile: TargetProfile) -> OrtRunner:
    """An in-memory ONNX model (a quantization candidate) on this runtime."""
    return OrtRunner(model.SerializeToString(), profile.threads)


def load(artifact_dir: Path, manifest: dict[str, Any], threads: int) -> OrtRunner:
    return OrtRunner(artifact_dir / manifest["model_files"][0], threads)
