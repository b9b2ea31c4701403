"""Backend registry: each backend lives in its own module, imported only when used.

A backend module provides:
  NAME: str
  available() -> bool                       the runtime imports here
  runtime_version() -> str
  check_device(device) -> None              EdgetlError naming the devices present when absent
  compile(onnx_path, out_dir, profile, precision) -> list[str]   model files written to out_dir
  load(artifact_dir, manifest, threads) -> Runner
  load_onnx(model_proto, profile) -> Runner an in-memory ONNX model (quantization candidates)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgetl.errors import EdgetlError

BACKENDS = {
    "onnxruntime": "edgetl.backends.onnxruntime",
    "openvino": "edgetl.backends.openvino",
}


def get_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise EdgetlError(f"backend {name!r} is unknown; known: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
