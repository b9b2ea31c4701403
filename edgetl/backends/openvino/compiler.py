"""OpenVINO, host side: the ONNX graph converted to an IR (FP16 weights for fp16), and a
guard candidate converted in memory."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.backends.compiler import CompileInput, Compiler
from edgetl.backends.openvino.options import OpenVinoOptions
from edgetl.backends.openvino.runtime import MODEL_FILES, OpenVinoRunner
from edgetl.core.errors import EdgetlError

if TYPE_CHECKING:
    import onnx

    from edgetl.core.targets import TargetProfile


class OpenVinoCompiler(Compiler):
    name = "openvino"

    def compile(self, graph: CompileInput, out_dir: Path, profile: TargetProfile) -> list[str]:
        import openvino as ov

        options: OpenVinoOptions = self.options(profile)
        model = ov.convert_model(str(graph.onnx))
        if options.static_shape:
            # NPUs compile static shapes only; reshape a dynamic-batch export to batch 1.
            shape = list(model.input(0).get_partial_shape())
            model.reshape([1, *[int(str(d)) for d in shape[1:]]])
            dynamic = [
                port.get_any_name()
                for port in [*model.inputs, *model.outputs]
                if not port.get_partial_shape().is_static
            ]
            if dynamic:  # checked here: the NPU would refuse it only on the device
                raise EdgetlError(
                    f"target {profile.name} needs static shapes; {dynamic} stay dynamic after "
                    "reshaping to batch 1"
                )
        # FP16 weights for fp16; FP32 and INT8 keep FP32 for what is not quantized.
        ov.save_model(
            model, str(out_dir / MODEL_FILES[0]), compress_to_fp16=graph.precision == "fp16"
        )
        return list(MODEL_FILES)

    def load_onnx(self, model: onnx.ModelProto, profile: TargetProfile) -> OpenVinoRunner:
        import onnx
        import openvino as ov

        with tempfile.TemporaryDirectory(prefix="edgetl-ov-") as work:
            path = Path(work) / "candidate.onnx"
            onnx.save(model, str(path))
            converted = ov.convert_model(str(path))
        # No model cache: candidates are compiled once each.
        options: OpenVinoOptions = self.options(profile)
        config = options.config(profile.threads, None)
        return OpenVinoRunner(converted, profile.device, config)
