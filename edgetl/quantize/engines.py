"""Quantization engines behind one interface: (prepared FP32 ONNX, calibration, recipe) -> QDQ ONNX.

Each engine quantizes everything it can except `float_nodes` and the recipe's float
patterns and op types. The result is the engine's own QDQ graph; `qdq.for_onnxruntime`
is applied by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from edgetl.core.constants import INPUT_NAME
from edgetl.quantize.recipes import Recipe

Engine = Callable[[onnx.ModelProto, np.ndarray, Recipe, list[str]], onnx.ModelProto]


def prepare(fp32_path: Path, out_path: Path) -> onnx.ModelProto:
    """Shape inference and constant folding (ONNX Runtime's quant_pre_process).

    timm's TF-'same' padding exports as Shape/Gather/Pad chains; folded to constants the
    convolutions become plain Conv nodes that both engines can quantize and ORT can fuse.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path))
    return onnx.load(str(out_path))


def float_node_names(model: onnx.ModelProto, recipe: Recipe) -> list[str]:
    """Nodes the recipe keeps in float: its name patterns and op types."""
    patterns = [re.compile(p) for p in recipe.float_layers]
    names = [
        node.name
        for node in model.graph.node
        if node.op_type in recipe.float_ops or any(p.search(node.name) for p in patterns)
    ]
    return sorted(set(names))


def quantize_nncf(
    model: onnx.ModelProto, calib: np.ndarray, recipe: Recipe, float_nodes: list[str]
) -> onnx.ModelProto:
    # NNCF loads torch's C++ extension helpers, which warn "No CUDA runtime is found" on
    # every CPU host; nothing is compiled for an ONNX model, so the warning is only noise.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.ERROR)
    ranges = {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX,
        "mean_quantile": RangeEstimatorParametersSet.MEAN_QUANTILE,
        "histogram": RangeEstimatorParametersSet.HISTOGRAM,
    }
    scheme = (
        QuantizationScheme.SYMMETRIC
        if recipe.symmetric_activations
        else QuantizationScheme.ASYMMETRIC
    )
    advanced = AdvancedQuantizationParameters(
        # ORT's integer kernels take one scale per activation tensor.
        activations_quantization_params=QuantizationParameters(per_channel=False, mode=scheme),
        weights_quantization_params=QuantizationParameters(per_channel=recipe.per_channel_weights),
        activations_range_estimator_params=ranges[recipe.method],
        disable_bias_correction=recipe.bias_correction == "none",
    )
    dataset = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))], lambda x: {INPUT_NAME: x})
    preset = (
        nncf.QuantizationPreset.PERFORMANCE
        if recipe.symmetric_activations
        else nncf.QuantizationPreset.MIXED
    )
    # NNCF draws its progress bars on stdout, which belongs to --json output.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(
            model,
            dataset,
            preset=preset,
            subset_size=len(calib),
            fast_bias_correction=recipe.bias_correction != "full",
            ignored_scope=nncf.IgnoredScope(names=float_nodes, validate=False),
            advanced_parameters=advanced,
        )


def quantize_onnxruntime(
    model: onnx.ModelProto, calib: np.ndarray, recipe: Recipe, float_nodes: list[str]
) -> onnx.ModelProto:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "distribution": CalibrationMethod.Distribution,
    }

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calib[i : i + 1] for i in range(len(calib)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="edgetl-ort-quant-") as work:
        source, target = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        onnx.save(model, str(source))
        quantize_static(
            str(source),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel_weights,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=float_nodes,
            calibrate_method=methods[recipe.method],
            extra_options={"ActivationSymmetric": recipe.symmetric_activations},
        )
        return onnx.load(str(target))


ENGINES: dict[str, Engine] = {"nncf": quantize_nncf, "onnxruntime": quantize_onnxruntime}
