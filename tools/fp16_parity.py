"""How far an FP16-typed graph (what TensorRT 11 builds from) lands from FP32, per model, and
how far a deliberately broken one lands: the numbers behind the profiles' fp16_graph
tolerance (core/measures/parity.py's relative logit error).

For each FP32 artifact (an `edgetl export --target cpu --precision fp32` directory: its
ONNX and reference set) and each randomly initialised timm architecture (its head scaled so
logits spread like a trained head's, ~10-20), the graph is converted as export converts it
(onnxruntime.transformers.float16, FP32 I/O), run with ONNX Runtime, and compared with the
FP32 graph on the same images; then one middle convolution's weights are corrupted (one
output channel's sign flipped: a wrong graph that still runs and still agrees on most
images) and compared again. Columns: max |logit diff|, the logits' scale (their RMS), the
relative error (max |diff| / RMS), and top-1 agreement.

    python tools/fp16_parity.py runs/a/export/cpu-fp32 [...] [--timm resnet18@224 ...]
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import numpy as np


def _run(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # FP16 Ceil falls back to FP32 on ORT's CPU: expected
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    step = model_input.shape[0] if isinstance(model_input.shape[0], int) else 16
    return np.concatenate([session.run(None, {model_input.name: images[i : i + step]})[0]
                           for i in range(0, len(images), step)])  # fmt: skip


def _broken(model):  # type: ignore[no-untyped-def]
    """One output channel of the middle convolution's weights with its sign flipped."""
    import onnx
    from onnx import numpy_helper

    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    inits = {i.name: i for i in broken.graph.initializer}
    convs = [n for n in broken.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    target = inits[convs[len(convs) // 2].input[1]]
    weights = numpy_helper.to_array(target).copy()
    weights[0] = -weights[0]
    target.CopyFrom(numpy_helper.from_array(weights, target.name))
    return broken


def measure(name: str, model, images: np.ndarray, broken: bool = True) -> list[tuple]:  # type: ignore[no-untyped-def]
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgetl.core.measures.parity import relative_error

    fp32 = _run(model.SerializeToString(), images)
    rows = []
    variants = [("fp16", model)] + ([("fp16, broken", _broken(model))] if broken else [])
    for what, graph in variants:
        converted = convert_float_to_float16(graph, keep_io_types=True)
        logits = _run(converted.SerializeToString(), images)
        diff = float(np.abs(logits.astype(np.float64) - fp32).max())
        scale = float(np.sqrt(np.mean(fp32.astype(np.float64) ** 2)))
        agree = float(np.mean(logits.argmax(1) == fp32.argmax(1)))
        rows.append((f"{name} {what}", diff, scale, relative_error(fp32, logits), agree))
    return rows


def _artifact(path: Path):  # type: ignore[no-untyped-def]
    import onnx

    from edgetl.core.artifact.reference import ReferenceSet
    from edgetl.core.records import Manifest

    manifest = Manifest.read(path)
    reference = ReferenceSet.load(path / manifest.reference.file)
    images = manifest.preprocess.normalize(reference.images).astype(np.float32)
    return onnx.load(str(path / "model.onnx")), images


def _timm(spec: str, images: np.ndarray):  # type: ignore[no-untyped-def]
    import onnx
    import timm
    import torch

    arch, size = spec.split("@")
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=20).eval()
    x = torch.nn.functional.interpolate(torch.from_numpy(images), size=int(size))
    with torch.no_grad():
        spread = model(x).std()
        head = model.get_classifier()
        head.weight.mul_(6.0 / spread)  # logits with a trained head's spread (std ~6)
        head.bias.zero_()
    buffer = io.BytesIO()
    torch.onnx.export(model, x[:1], buffer, input_names=["images"], opset_version=17,
                      dynamic_axes={"images": {0: "batch"}}, dynamo=False)  # fmt: skip
    return onnx.load_from_string(buffer.getvalue()), x.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--timm", nargs="*", default=[], help="ARCH@SIZE, random weights")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rows = []
    images = None
    for path in args.artifacts:
        model, images = _artifact(path)
        rows += measure(f"{path.parent.parent.name} ({images.shape[-1]} px)", model, images)
    for spec in args.timm:
        assert images is not None, "--timm takes its images from the first artifact"
        model, resized = _timm(spec, images)
        rows += measure(spec, model, resized, broken=False)
    print(f"{'model':40} {'max|diff|':>10} {'RMS':>7} {'rel':>9} {'agree':>7}")
    for name, diff, scale, rel, agree in rows:
        print(f"{name:40} {diff:10.3g} {scale:7.2f} {rel:9.2e} {agree:7.2%}")


if __name__ == "__main__":
    main()
