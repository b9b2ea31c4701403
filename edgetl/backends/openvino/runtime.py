"""OpenVINO on Intel CPU, GPU and NPU, device side: the artifact is an IR (model.xml +
model.bin); compiler.py makes it on the host.

The same code serves every device; only the profile's device string differs. INT8 comes in
as the accuracy-guarded QDQ ONNX model, which OpenVINO's ONNX frontend turns into
FakeQuantize operations that its low-precision transformations run in integer arithmetic.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.base import PlacedOps, Runtime, RuntimeSpec
from edgetl.backends.openvino.options import OpenVinoOptions
from edgetl.core.errors import EdgetlError
from edgetl.core.outputs import cache_dir, check_writable

MODEL_FILES = ["model.xml", "model.bin"]


def devices() -> list[str]:
    import openvino as ov

    return list(ov.Core().available_devices)


def check_device(device: str) -> None:
    """A clear exit 2 when this machine has no such OpenVINO device."""
    seen = devices()
    family = device.split(".")[0]
    if device not in seen and not any(d.split(".")[0] == family for d in seen):
        raise EdgetlError(
            f"OpenVINO device {device!r} is not present on this machine; OpenVINO sees: "
            f"{', '.join(seen) or 'nothing'}. Use a target for one of those (e.g. "
            "openvino-cpu), or export here and run on the machine that has the device"
        )


class OpenVinoRunner:
    """A compiled OpenVINO model, safe to call from many threads at once.

    An InferRequest holds one input and one output buffer and is not reentrant: shared by
    threads it raised "Infer Request is busy" on ~96% of calls from 8 threads and returned
    other images' outputs. Each thread gets its own request, created on first use, so
    threads neither wait for a lock nor see another call's buffers (tools/bench_threads.py
    compares this with a lock and with AsyncInferQueue).
    """

    def __init__(self, model: Path | Any, device: str, config: dict[str, Any]):
        """`model` is an IR/ONNX file or an ov.Model already in memory."""
        import openvino as ov

        check_device(device)
        core = ov.Core()
        source = str(model) if isinstance(model, Path) else model
        self.compiled = core.compile_model(source, device, config)
        self._local = threading.local()
        self._tensor = ov.Tensor
        shape = self.compiled.input(0).get_partial_shape()
        self.batch_size = shape[0].get_length() if shape[0].is_static else None

    def io_shapes(self) -> tuple[list[int | None], list[int | None]]:
        """The model's input and output shapes (None where a dimension is dynamic)."""

        def dims(port: Any) -> list[int | None]:
            return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]

        return dims(self.compiled.input(0)), dims(self.compiled.output(0))

    @property
    def request(self) -> Any:
        """This thread's infer request."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, images: np.ndarray) -> np.ndarray:
        # Share the caller's array instead of copying it into the request: at batch 1 the
        # copy and dict handling of infer({0: x}) cost ~10% of a 0.5 ms inference.
        request = self.request
        tensor = self._tensor(np.ascontiguousarray(images, dtype=np.float32), shared_memory=True)
        request.set_input_tensor(tensor)
        request.infer()
        return request.get_output_tensor(0).data.copy()

    def named(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name (a detector's boxes and scores)."""
        self.run(images)
        request = self.request
        found = {}
        for i, port in enumerate(self.compiled.outputs):
            value = request.get_output_tensor(i).data.copy()
            for name in port.get_names():  # a tensor may carry its producer's name too
                found[name] = value
        return found


def model_cache_dir() -> Path:
    """Where OpenVINO keeps compiled blobs between runs (EDGETL_OPENVINO_CACHE overrides)."""
    return cache_dir("openvino", "EDGETL_OPENVINO_CACHE")


class OpenVinoRuntime(Runtime):
    name = "openvino"
    module = "openvino"
    Options = OpenVinoOptions
    host_device = "CPU"  # IR is device-independent: GPU/NPU targets export (and measure) here

    def runtime_version(self) -> str:
        import openvino

        return str(openvino.get_version())

    def check_device(self, device: str) -> None:
        check_device(device)

    def load(self, model_dir: Path, spec: RuntimeSpec) -> OpenVinoRunner:
        options: OpenVinoOptions = self.options(spec.options, str(model_dir / "manifest.json"))
        cache = model_cache_dir() if options.model_cache else None
        if cache is not None:
            # OpenVINO's own error for an unwritable cache came out as exit 3, after the load.
            check_writable(cache / "blob", "the OpenVINO model cache (EDGETL_OPENVINO_CACHE)")
        return OpenVinoRunner(
            model_dir / spec.model_files[0],
            spec.device,
            options.config(spec.threads, cache),
        )

    def op_placement(self, model_dir: Path, spec: RuntimeSpec) -> list[PlacedOps]:
        from edgetl.backends.openvino.ops import op_placement

        return op_placement(self.load(model_dir, spec).compiled, spec.device)
