"""ONNX Runtime, host side: the artifact is the graph, copied; candidates run in memory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.backends.compiler import CompileInput, Compiler
from edgetl.backends.onnxruntime.runtime import MODEL_FILE, OrtRunner

if TYPE_CHECKING:
    import onnx

    from edgetl.core.targets import TargetProfile


class OrtCompiler(Compiler):
    name = "onnxruntime"

    def compile(self, graph: CompileInput, out_dir: Path, profile: TargetProfile) -> list[str]:
        if graph.onnx != out_dir / MODEL_FILE:
            shutil.copyfile(graph.onnx, out_dir / MODEL_FILE)
        return [MODEL_FILE]

    def load_onnx(self, model: onnx.ModelProto, profile: TargetProfile) -> OrtRunner:
        return OrtRunner(model.SerializeToString(), profile.threads)

    def rewrite_int8(self, model: onnx.ModelProto) -> onnx.ModelProto:
        from edgetl.backends.onnxruntime.rewrites import for_onnxruntime

        return for_onnxruntime(model)
