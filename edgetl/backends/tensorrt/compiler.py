"""TensorRT, host side: the bundle a device builds its engine from (the Q/DQ or FP32 graph,
the FP16-typed graph TensorRT 11 needs, a calibration cache for TensorRT 10's implicit INT8,
DEVICE.md), checked against TensorRT's Q/DQ rules. On a host without TensorRT, accuracy is
measured by the profile's host proxy (ONNX Runtime on the same Q/DQ graph)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.backends.base import Runner
from edgetl.backends.compiler import CompileInput, Compiler
from edgetl.backends.onnx_graph import constants
from edgetl.backends.tensorrt.bundle_doc import device_doc
from edgetl.backends.tensorrt.calibration_cache import write_cache
from edgetl.backends.tensorrt.engine import FP16_FILE, FP32_FILE, MODEL_FILE, carried
from edgetl.backends.tensorrt.options import TensorRtOptions
from edgetl.backends.tensorrt.runtime import CALIBRATION_CACHE, DEVICE_DOC, encode_version
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.files import atomic_write_text

if TYPE_CHECKING:
    import onnx

    from edgetl.core.targets import TargetProfile


class TensorRtCompiler(Compiler):
    name = "tensorrt"
    ships_wheel = True  # a Jetson's package index has no edgetl: the bundle carries it

    def host_checks(
        self, out_dir: Path, precision: str, profile: TargetProfile
    ) -> list[tuple[str, Path, str]]:
        """Extra graphs a device of the profile builds from, checked on the host proxy at
        export: (what, file, the profile's parity key). Only the routes of the TensorRT
        majors the bundle is for: an Orin on 10.3 never builds from the FP16-typed graph."""
        options: TensorRtOptions = self.options(profile)
        users = carried(options.majors, precision, options.dla_core >= 0).get(FP16_FILE)
        if users is None:
            return []
        releases = [v for v in options.tensorrt_versions if int(v.split(".")[0]) in users]
        what = f"FP16-typed graph for TensorRT {', '.join(releases)}"
        return [(what, out_dir / FP16_FILE, "fp16_graph")]

    def compile(self, graph: CompileInput, out_dir: Path, profile: TargetProfile) -> list[str]:
        import onnx

        from edgetl.backends.tensorrt.rules import advisories, violations

        options: TensorRtOptions = self.options(profile)
        precision = graph.precision
        model = onnx.load(str(graph.onnx))
        files = carried(options.majors, precision, options.dla_core >= 0)
        if FP16_FILE in files:
            # TensorRT 11 has no FP16 builder flag: precision comes from the graph's types.
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(model, keep_io_types=True), str(out_dir / FP16_FILE))
        if precision == "int8":
            for advice in advisories(model):
                logging.getLogger("edgetl").warning("TensorRT INT8: %s", advice)
            problems = violations(model)
            if problems:
                raise CheckFailed(
                    f"the INT8 model breaks TensorRT's Q/DQ rules in {len(problems)} places; "
                    "no bundle written:\n  " + "\n  ".join(problems)
                )
            if graph.fp32_onnx is not None:
                shutil.copyfile(graph.fp32_onnx, out_dir / FP32_FILE)
                cache = write_cache(activation_scales(model), implicit_int8_version(options))
                atomic_write_text(out_dir / CALIBRATION_CACHE, cache)
        shutil.copyfile(graph.onnx, out_dir / MODEL_FILE)
        atomic_write_text(out_dir / DEVICE_DOC, device_doc(profile, options, precision))
        return [MODEL_FILE]

    def load_onnx(self, model: onnx.ModelProto, profile: TargetProfile) -> Runner:
        raise EdgetlError(
            f"target {profile.name}: candidates are measured by the host proxy; set "
            "host_proxy in the profile"
        )

    def rewrite_int8(self, model: onnx.ModelProto) -> onnx.ModelProto:
        from edgetl.backends.tensorrt.rules import to_tensorrt

        return to_tensorrt(model)


def implicit_int8_version(options: TensorRtOptions) -> int:
    """The TensorRT 10 release a bundle's calibration cache is written for: the first 10.x
    the profile names (`edgetl build` rewrites it for the version it finds)."""
    tens = [v for v in options.tensorrt_versions if v.split(".")[0] == "10"]
    return encode_version(tens[0] if tens else "10.0.0")


def activation_scales(qdq: onnx.ModelProto) -> dict[str, float]:
    """Tensor name -> scale of every activation QuantizeLinear (weights excluded)."""
    values = constants(qdq.graph)
    scales: dict[str, float] = {}
    for node in qdq.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in values:
            continue
        scale = values.get(node.input[1])
        if scale is None or scale.size != 1:
            raise EdgetlError(
                f"{node.name}: activation scale is not one constant; TensorRT's calibration "
                "cache holds one scale per tensor"
            )
        scales[node.input[0]] = float(scale.reshape(()))
    return scales
