"""core/artifact/onnx_wire.py: the external-data locations of an ONNX file from its wire format, as
the onnx package reads them, without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetl.core.artifact.integrity import _locations
from edgetl.core.artifact.onnx_wire import WireError, external_locations


def _model_with_external_data(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.ones((8, 8), np.float32), f"w{i}") for i in range(2)]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w0"], ["h"]),
            helper.make_node("MatMul", ["h", "w1"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        weights,
    )
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True,
              all_tensors_to_one_file=False, size_threshold=0)  # fmt: skip


def test_the_locations_are_the_ones_onnx_reads(tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "m.onnx"
    _model_with_external_data(path)
    model = onnx.load(str(path), load_external_data=False)
    expected = [
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    ]
    assert len(expected) == 2 and external_locations(path.read_bytes()) == expected
    assert _locations(path) == expected  # through the memory map


def test_a_file_that_is_not_onnx_is_a_wire_error_and_the_map_closes(tmp_path: Path) -> None:
    """An OpenVINO IR's .xml failed the walk with views of the map alive: closing the map
    raised BufferError and every OpenVINO artifact failed to load."""
    xml = tmp_path / "model.xml"
    xml.write_text('<?xml version="1.0"?>\n<net name="m" version="11"></net>\n')
    with pytest.raises(WireError):
        _locations(xml)
    truncated = tmp_path / "cut.onnx"
    _model_with_external_data(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-5])
    with pytest.raises(WireError):
        _locations(truncated)
