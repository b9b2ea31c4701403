"""ONNX Runtime on the CPU, device side: the artifact is the ONNX file itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.backends.base import PlacedOps, Runtime, RuntimeSpec
from edgetl.core.errors import EdgetlError

MODEL_FILE = "model.onnx"


class OrtRunner:
    def __init__(self, model: Path | bytes, threads: int):
        """`model` is a file or a serialized ModelProto (the quantizer evaluates in memory)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                model if isinstance(model, bytes) else str(model),
                options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # ONNX Runtime's own types (Fail, InvalidGraph, ...)
            if isinstance(model, bytes):
                raise  # a graph edgetl built in memory: a bug, not the user's file
            reason = str(exc).strip().splitlines()[0][:300]
            raise EdgetlError(
                f"{model}: ONNX Runtime cannot load this model ({reason}); the file or its "
                "external data is damaged or not ONNX Runtime's: export it again"
            ) from exc
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        batch = model_input.shape[0]
        self.batch_size = batch if isinstance(batch, int) else None

    def run(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: images})[0])

    def named(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name (a detector's boxes and scores)."""
        found = self.session.run(None, {self.input_name: images})
        names = [output.name for output in self.session.get_outputs()]
        return {name: np.asarray(value) for name, value in zip(names, found, strict=True)}

    def io_shapes(self) -> tuple[list[int | None], list[int | None]]:
        """The graph's input and output shapes (None where a dimension is dynamic)."""

        def dims(shape: list[object]) -> list[int | None]:
            return [d if isinstance(d, int) else None for d in shape]

        session = self.session
        return dims(session.get_inputs()[0].shape), dims(session.get_outputs()[0].shape)


class OrtRuntime(Runtime):
    name = "onnxruntime"
    module = "onnxruntime"

    def runtime_version(self) -> str:
        import onnxruntime

        return str(onnxruntime.__version__)

    def check_device(self, device: str) -> None:
        if device != "CPU":
            raise EdgetlError(f"device {device!r}: the onnxruntime backend here runs on CPU only")

    def load(self, model_dir: Path, spec: RuntimeSpec) -> OrtRunner:
        return OrtRunner(model_dir / spec.model_files[0], spec.threads)

    def op_placement(self, model_dir: Path, spec: RuntimeSpec) -> list[PlacedOps]:
        from edgetl.backends.onnxruntime.ops import op_placement

        return op_placement(model_dir / spec.model_files[0], spec.threads)
