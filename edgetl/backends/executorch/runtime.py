"""ExecuTorch, device side: the `.pte` run by `executorch.runtime`.

Python's ExecuTorch runtime links libtorch (its `_C` extension), so a device that runs a
`.pte` through edgetl needs torch as well: the `edgetl[executorch]` extra (docs/arm.md
measures what it costs). The program is lowered for batch 1; a batch runs image by image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.base import PlacedOps, Runtime, RuntimeSpec
from edgetl.backends.executorch import quiet_imports
from edgetl.core.errors import EdgetlError

MODEL_FILE = "model.pte"
DELEGATION_FILE = "delegation.json"  # written by export (compiler.py): which ops XNNPACK took
BOOKKEEPING = ("getitem",)  # reads a delegate's outputs: no kernel runs it


def delegation_line(delegation: dict[str, Any]) -> str:
    """One line: how much XNNPACK took, and the op types it did not."""
    fallback = {op: n["portable"] for op, n in delegation["ops"].items()
                if n["portable"] and op not in BOOKKEEPING}  # fmt: skip
    left = ", ".join(f"{op} x{n}" for op, n in sorted(fallback.items())) or "none"
    return (
        f"ExecuTorch: {delegation['delegated_nodes']} nodes on XNNPACK in "
        f"{delegation['delegated_subgraphs']} subgraph(s); ops on the portable kernels: {left}"
    )


def as_input(image: np.ndarray) -> Any:
    """One preprocessed image as the batch-1 tensor the program takes (unsqueezed by torch:
    numpy's image[None] has a 0 stride, which torch.export of ExecuTorch refuses)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0)


def read_delegation(model_dir: Path) -> dict[str, Any]:
    path = model_dir / DELEGATION_FILE
    if not path.is_file():
        raise EdgetlError(f"{path}: missing; export the artifact again")
    return dict(json.loads(path.read_text()))


class ExecuTorchRunner:
    batch_size: int | None = 1

    def __init__(self, path: Path, threads: int):
        quiet_imports()
        from executorch.runtime import Runtime as EtRuntime
        from executorch.runtime import Verification

        try:
            program = EtRuntime.get().load_program(path, verification=Verification.Minimal)
            self.method = program.load_method("forward")
        except Exception as exc:  # ExecuTorch raises RuntimeError / ValueError with codes
            raise EdgetlError(
                f"{path}: ExecuTorch cannot load this program ({str(exc)[:200]}); the file is "
                "damaged or from another ExecuTorch: export it again"
            ) from exc
        if threads > 0:  # 0: XNNPACK's threadpool as ExecuTorch sized it (the cores)
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(threads)

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = [self.method.execute([as_input(image)])[0] for image in images]
        return np.concatenate([np.asarray(out.detach().numpy()) for out in outputs])


class ExecuTorchRuntime(Runtime):
    name = "executorch"
    module = "executorch.runtime"  # the package itself is a namespace (no origin)

    def runtime_version(self) -> str:
        from importlib.metadata import version

        return version("executorch")

    def check_device(self, device: str) -> None:
        if device != "CPU":
            raise EdgetlError(f"device {device!r}: the executorch backend runs on CPU (XNNPACK)")

    def load(self, model_dir: Path, spec: RuntimeSpec) -> ExecuTorchRunner:
        return ExecuTorchRunner(model_dir / spec.model_files[0], spec.threads)

    def artifact_notes(self, model_dir: Path) -> list[str]:
        return [delegation_line(read_delegation(model_dir))]

    def op_placement(self, model_dir: Path, spec: RuntimeSpec) -> list[PlacedOps]:
        """The delegation export recorded (delegation.json): per op type, the nodes lowered
        to XNNPACK and those left to the portable kernels, in the program's precision."""
        record = read_delegation(model_dir)
        precision = record.get("precision", "fp32")
        rows = []
        for op, counts in record["ops"].items():
            if op in BOOKKEEPING:
                continue
            kind = "convert" if "quantize" in op else precision
            rows += [PlacedOps(op, where, kind, counts[key])
                     for key, where in (("xnnpack", "XNNPACK"), ("portable", "portable"))
                     if counts[key]]  # fmt: skip
        return rows
