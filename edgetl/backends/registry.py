"""Backend registry: one class per runtime, each in its own package, imported only when used."""

from __future__ import annotations

import importlib

from edgetl.backends.base import Backend
from edgetl.core.errors import EdgetlError

# name -> "module:Class"; the module is imported on first use, so the device side needs
# only the runtime it runs.
BACKENDS = {
    "onnxruntime": "edgetl.backends.onnxruntime.backend:OnnxRuntimeBackend",
    "openvino": "edgetl.backends.openvino.backend:OpenVinoBackend",
    "tensorrt": "edgetl.backends.tensorrt.backend:TensorRtBackend",
}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise EdgetlError(f"backend {name!r} is unknown; known: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    backend = getattr(importlib.import_module(module), cls)()
    assert isinstance(backend, Backend)
    return backend
