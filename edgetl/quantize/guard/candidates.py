"""The guard's candidates: the engine's INT8 graph, with chosen layers put back in float."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from edgetl.quantize import qdq
from edgetl.quantize.calibration import CalibrationSet
from edgetl.quantize.engines import ENGINES, float_node_names
from edgetl.quantize.recipes import Recipe

Rewrite = Callable[[onnx.ModelProto], onnx.ModelProto]


@dataclass(frozen=True)
class Candidates:
    fp32: onnx.ModelProto  # the prepared FP32 graph
    raw: onnx.ModelProto  # the engine's INT8 graph, every layer the recipe allows quantized
    recipe_float: frozenset[str]  # layers the recipe itself keeps float
    rewrite: Rewrite  # the target backend's own lossless QDQ rewrite

    @classmethod
    def quantize(
        cls, fp32: onnx.ModelProto, calibration: CalibrationSet, recipe: Recipe, rewrite: Rewrite
    ) -> Candidates:
        recipe_float = float_node_names(fp32, recipe)
        raw = ENGINES[recipe.engine](fp32, calibration.images, recipe, recipe_float)
        return cls(fp32, raw, frozenset(recipe_float), rewrite)

    def build(self, float_layers: list[str]) -> onnx.ModelProto:
        """The INT8 graph with `float_layers` in float, rewritten for the target."""
        if float_layers:
            return self.rewrite(qdq.keep_float(self.raw, self.fp32, float_layers))
        return self.rewrite(qdq.copy_model(self.raw))

    def quantized_layers(self) -> list[str]:
        """Layers the engine quantized that the guard may put back in float."""
        in_fp32 = {node.name for node in self.fp32.graph.node}
        return [
            name
            for name in qdq.quantized_nodes(self.raw)
            if name in in_fp32 and name not in self.recipe_float
        ]
