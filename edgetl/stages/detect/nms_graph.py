"""NMS inside the graph: ONNX `NonMaxSuppression` appended to a detector's graph (ONNX Runtime
and OpenVINO run it; TensorRT >= 8.5 imports it as its NMS layer), then the best
`max_detections` over all classes (TopK). Outputs, in input pixels: det_boxes (K, 4),
det_scores (K,), det_classes (K,), the same detections as core/postprocess.detections (the
same floor, IoU and per-class greedy order), where no more than `candidates` pass the floor.

Float, appended after quantization: NMS is never quantized."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgetl.core.postprocess import NmsSettings
from edgetl.core.records.detector import GRAPH_OUTPUTS

PREFIX = "/nms/"


def with_nms(model: onnx.ModelProto, settings: NmsSettings) -> onnx.ModelProto:
    """A copy of `model` (outputs boxes (1, L, 4), scores (1, L, C)) ending in NMS."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    constants: dict[str, np.ndarray] = {
        "max_per_class": np.asarray([settings.max_detections], np.int64),
        "iou": np.asarray([settings.iou_threshold], np.float32),
        "floor": np.asarray([settings.score_threshold], np.float32),
        "zero": np.asarray([0], np.int64),
        "zero_f": np.asarray(0.0, np.float32),
        "flat": np.asarray([-1], np.int64),
        "limit": np.asarray([settings.max_detections], np.int64),
        "cap": np.asarray([settings.candidates], np.int64),
        "one": np.asarray(1, np.int64),
        "two": np.asarray(2, np.int64),
    }
    for name, value in constants.items():
        graph.initializer.append(numpy_helper.from_array(value, PREFIX + name))

    def n(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> list[str]:
        names = [PREFIX + o for o in outputs]
        graph.node.append(helper.make_node(op, [_ref(i) for i in inputs], names,
                                           name=PREFIX + outputs[0], **attrs))  # fmt: skip
        return names

    _capped(n)
    _selected(n)
    boxes, scores, classes = GRAPH_OUTPUTS
    make = helper.make_node
    graph.node.append(make("Gather", ["/nms/kept_boxes", "/nms/top"], [boxes], boxes, axis=0))
    graph.node.append(make("Identity", ["/nms/top_scores"], [scores], scores))
    graph.node.append(make("Gather", ["/nms/class", "/nms/top"], [classes], classes, axis=0))
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(GRAPH_OUTPUTS[0], TensorProto.FLOAT, ["K", 4]),
        helper.make_tensor_value_info(GRAPH_OUTPUTS[1], TensorProto.FLOAT, ["K"]),
        helper.make_tensor_value_info(GRAPH_OUTPUTS[2], TensorProto.INT64, ["K"]),
    ])  # fmt: skip
    onnx.checker.check_model(out)
    return out


def _ref(name: str) -> str:
    """A constant's or node output's full name (graph tensors keep theirs)."""
    return name if name.startswith(PREFIX) or name in ("boxes", "scores") else PREFIX + name


Node = Callable[..., list[str]]  # appends one node: (op, inputs, outputs, **attributes)


def _capped(n: Node) -> None:
    """per_class (1, C, L): the scores, with all but the best `candidates` pairs zeroed."""
    n("Transpose", ["scores"], ["all_per_class"], perm=[0, 2, 1])  # (1, C, L)
    # Only the best `candidates` (location, class) pairs go in, as in NumPy: the others zeroed.
    n("Reshape", ["/nms/all_per_class", "flat"], ["all_flat"])
    n("Shape", ["/nms/all_flat"], ["pairs"])
    n("Min", ["/nms/pairs", "cap"], ["capped"])
    n("TopK", ["/nms/all_flat", "/nms/capped"], ["best_scores", "best"], axis=0)
    n("Mul", ["/nms/all_flat", "zero_f"], ["zeros"])
    n("ScatterElements", ["/nms/zeros", "/nms/best", "/nms/best_scores"], ["kept_flat"], axis=0)
    n("Shape", ["/nms/all_per_class"], ["class_shape"])
    n("Reshape", ["/nms/kept_flat", "/nms/class_shape"], ["per_class"])


def _selected(n: Node) -> None:
    """NMS per class, then the best `max_detections` over all classes: kept_boxes,
    top_scores, class and top (the kept detections' order)."""
    n(
        "NonMaxSuppression",
        ["boxes", "/nms/per_class", "max_per_class", "iou", "floor"],
        ["selected"],
        center_point_box=0,
    )  # fmt: skip  (K, 3): batch, class, location
    n("Gather", ["/nms/selected", "one"], ["class"], axis=1)
    n("Gather", ["/nms/selected", "two"], ["location"], axis=1)
    n("Squeeze", ["boxes", "zero"], ["all_boxes"])  # (L, 4)
    n("Squeeze", ["/nms/per_class", "zero"], ["class_scores"])  # (C, L)
    n("Shape", ["/nms/class_scores"], ["shape"])
    n("Gather", ["/nms/shape", "one"], ["locations"], axis=0)
    n("Mul", ["/nms/class", "/nms/locations"], ["row"])
    n("Add", ["/nms/row", "/nms/location"], ["flat_index"])
    n("Reshape", ["/nms/class_scores", "flat"], ["flat_scores"])
    n("Gather", ["/nms/flat_scores", "/nms/flat_index"], ["kept_scores"], axis=0)
    n("Shape", ["/nms/kept_scores"], ["kept"])
    n("Min", ["/nms/kept", "limit"], ["k"])
    n("TopK", ["/nms/kept_scores", "/nms/k"], ["top_scores", "top"], axis=0, largest=1, sorted=1)
    n("Gather", ["/nms/all_boxes", "/nms/location"], ["kept_boxes"], axis=0)
