"""The runtimes by name: each a device-side Runtime and a host-side Compiler, in its own
package, imported only when used (the device imports only the runtime it runs)."""

from __future__ import annotations

import importlib
from typing import Any

from edgetl.backends.base import Runtime
from edgetl.core.errors import EdgetlError

# name -> (the Runtime, the Compiler) as "module:Class"
BACKENDS = {
    "onnxruntime": (
        "edgetl.backends.onnxruntime.runtime:OrtRuntime",
        "edgetl.backends.onnxruntime.compiler:OrtCompiler",
    ),
    "openvino": (
        "edgetl.backends.openvino.runtime:OpenVinoRuntime",
        "edgetl.backends.openvino.compiler:OpenVinoCompiler",
    ),
    "tensorrt": (
        "edgetl.backends.tensorrt.runtime:TensorRtRuntime",
        "edgetl.backends.tensorrt.compiler:TensorRtCompiler",
    ),
    "executorch": (
        "edgetl.backends.executorch.runtime:ExecuTorchRuntime",
        "edgetl.backends.executorch.compiler:ExecuTorchCompiler",
    ),
}


def _class(where: str) -> Any:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def get_runtime(name: str) -> Runtime:
    """The device side of runtime `name`; EdgetlError naming the known ones."""
    if name not in BACKENDS:
        raise EdgetlError(f"backend {name!r} is unknown; known: {', '.join(BACKENDS)}")
    runtime = _class(BACKENDS[name][0])()
    assert isinstance(runtime, Runtime)
    return runtime


def get_compiler(name: str) -> Any:
    """The host side of runtime `name` (a backends.compiler.Compiler): export and search only."""
    runtime = get_runtime(name)
    return _class(BACKENDS[name][1])(runtime)
