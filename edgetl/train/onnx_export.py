"""PyTorch -> ONNX: one graph from images to logits, checked, with edgetl metadata inside."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch

from edgetl.core.constants import INPUT_NAME, OUTPUT_NAME
from edgetl.train.model import Run


def export_onnx(
    model: torch.nn.Module, run: Run, path: Path, opset: int, dynamic_batch: bool = False
) -> onnx.ModelProto:
    """Export `model`, run the ONNX checker, and store classes and preprocessing as metadata;
    returns the graph as written (callers need not read it again)."""
    size = run.preprocess.size
    example = torch.zeros(1, 3, size, size)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The TorchScript exporter is mature for CNNs and needs no onnxscript; torch warns
        # that the dynamo exporter is now the default.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    metadata = {
        "edgetl.classes": json.dumps(run.classes),
        "edgetl.preprocess": json.dumps(run.preprocess.to_dict()),
        "edgetl.backbone": run.info.backbone.name,
    }
    del graph.metadata_props[:]
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return graph
