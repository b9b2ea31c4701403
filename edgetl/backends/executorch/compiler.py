"""ExecuTorch, host side: the PyTorch model through torch.export, lowered to XNNPACK and
written as a `.pte`; INT8 through PT2E's XNNPACK quantizer (symmetric INT8, per-channel
weights) calibrated on the run's calibration images. The ONNX graph stays the export's
FP32 reference (guard candidates and the host proxy run it in ONNX Runtime).

Which ops XNNPACK took and which fell back to ExecuTorch's portable kernels is written
beside the program (delegation.json): the silent fallback users ask about (executorch
#1340), answered per artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.backends.compiler import CompileInput, Compiler
from edgetl.backends.executorch import quiet_imports
from edgetl.backends.executorch.runtime import (
    DELEGATION_FILE,
    MODEL_FILE,
    as_input,
    delegation_line,
)
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.ui import heartbeat

if TYPE_CHECKING:
    import onnx

    from edgetl.backends.base import Runner
    from edgetl.core.targets import TargetProfile


class ExecuTorchCompiler(Compiler):
    name = "executorch"
    quantizes_itself = True  # INT8 is PT2E's on the PyTorch model, not a Q/DQ ONNX graph

    def compile(self, graph: CompileInput, out_dir: Path, profile: TargetProfile) -> list[str]:
        if graph.torch_model is None or graph.example is None:
            raise EdgetlError(f"target {profile.name}: ExecuTorch compiles the PyTorch model")
        model = graph.torch_model.eval()
        example = (as_input(graph.example[0]),)
        if graph.precision == "int8":
            if graph.calibration is None:
                raise EdgetlError(f"target {profile.name}: INT8 needs calibration images")
            model = _quantized(model, example, graph.calibration, graph.float_modules)
        program, delegation = _lowered(model, example)
        delegation["precision"] = graph.precision
        (out_dir / MODEL_FILE).write_bytes(program)
        (out_dir / DELEGATION_FILE).write_text(json.dumps(delegation, indent=2) + "\n")
        say(delegation_line(delegation))
        return [MODEL_FILE, DELEGATION_FILE]

    def load_onnx(self, model: onnx.ModelProto, profile: TargetProfile) -> Runner:
        from edgetl.backends.onnxruntime.runtime import OrtRunner

        return OrtRunner(model.SerializeToString(), profile.threads)


def _quantized(
    model: Any, example: tuple[Any, ...], calibration: np.ndarray, float_modules: tuple[str, ...]
) -> Any:
    """PT2E: prepare with XNNPACK's quantizer (modules whose name matches a pattern of
    `float_modules` left float), observe the calibration images, convert."""
    import re

    import torch

    quiet_imports()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer().set_global(config)
    kept = [name for name, _ in model.named_modules()
            if name and any(re.search(p, name) for p in float_modules)]  # fmt: skip
    if kept:  # set_module_name(name, None) is "not supported yet" in 1.5: its filter is
        filters = [get_module_name_filter(name) for name in kept]
        quantizer.filter_fn = lambda node: not any(f(node) for f in filters)
        say(f"PT2E: {len(kept)} modules left float ({', '.join(kept[:4])}"
            f"{' ...' if len(kept) > 4 else ''})")  # fmt: skip
    what = f"PT2E XNNPACK quantizer: observing {len(calibration)} calibration images"
    with heartbeat(what), torch.no_grad():
        prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
        for image in calibration:
            prepared(as_input(image))
        return convert_pt2e(prepared)


def _lowered(model: Any, example: tuple[Any, ...]) -> tuple[bytes, dict[str, Any]]:
    import torch

    quiet_imports()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    # torch.export and the lowering take 10-30 s on EfficientNet-Lite0 here, silently
    with heartbeat("ExecuTorch: torch.export, lowering to XNNPACK"):
        edge = to_edge_transform_and_lower(
            torch.export.export(model, example), partitioner=[XnnpackPartitioner()]
        )
        delegation = delegation_of(edge.exported_program().graph_module)
        return bytes(edge.to_executorch().buffer), delegation


def delegation_of(graph_module: Any) -> dict[str, Any]:
    """Per op type: nodes lowered to XNNPACK and nodes left to the portable kernels."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    table = info.get_operator_delegation_dataframe()
    ops = {
        str(row["op_type"]): {
            "xnnpack": int(row["occurrences_in_delegated_graphs"]),
            "portable": int(row["occurrences_in_non_delegated_graphs"]),
        }
        for _, row in table.iterrows()
        if row["op_type"] != "Total"
    }
    return {
        "backend": "XnnpackBackend",
        "delegated_subgraphs": int(info.num_delegated_subgraphs),
        "delegated_nodes": int(info.num_delegated_nodes),
        "portable_nodes": int(info.num_non_delegated_nodes),
        "ops": ops,
    }
