"""engine.json: what `edgetl build` records beside the engine it built, one typed record read
and written through core/fields (by the runtime that loads the engine, the probe that may
rebuild it, and the lab that builds on its devices), and the one rule for when an engine
must be built again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields, write_fields
from edgetl.core.files import atomic_write_text

ENGINE_RECORD = "engine.json"
REBUILD = "; rebuild with `edgetl build`"


@dataclass(frozen=True)
class EngineDevice:
    """What an engine is tied to (backends/tensorrt/cuda_device.identity)."""

    gpu: str | None = None
    compute_capability: str | None = None
    module: str | None = None  # a Jetson's device tree model
    l4t: str | None = None


@dataclass(frozen=True)
class EngineRecord:
    tensorrt: str  # the TensorRT version that built it
    device: EngineDevice
    engine_sha256: str = ""
    precision: str = ""
    onnx: str = ""  # the bundle's graph it was built from
    flags: list[str] = field(default_factory=list)
    workspace_mb: int = 0
    dla_core: int = -1
    dynamic_batch: dict[str, int] | None = None  # the optimization profile (min, opt, max)
    placement: str = ""  # how the layers' placement below was found
    dla_layers: int | None = None
    gpu_layers: int | None = None
    gpu_fallback_layers: list[str] = field(default_factory=list)
    # "DLA|GPU LayerType precision" -> engine layers (the inspector's; absent: an older build)
    layer_types: dict[str, int] = field(default_factory=dict)
    planned_dla_layers: int | None = None
    planned_gpu: list[str] = field(default_factory=list)
    build_s: float = 0.0
    jetson: dict[str, str] | None = None  # power mode and L4T (core/env.jetson)
    built: str = ""  # when, ISO 8601
    parity: dict[str, Any] | None = None  # the engine on the reference set (build's check)

    @property
    def max_batch(self) -> int | None:
        return None if self.dynamic_batch is None else self.dynamic_batch.get("max")

    def stale(self, here: dict[str, str | None]) -> str | None:
        """Why this engine cannot run where `here` describes (the TensorRT version and the
        device keys one knows), in words; None when it can. The one rebuild rule."""
        built = {"tensorrt": self.tensorrt, **write_fields(self.device)}
        for key, value in here.items():
            if built.get(key) != value:
                return f"built with {key} {built.get(key)!r}, this machine has {value!r}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)

    def write(self, bundle: Path) -> None:
        atomic_write_text(bundle / ENGINE_RECORD, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def parse(cls, text: str, where: str) -> EngineRecord:
        """The record in `text` (from `where`); EdgetlError naming the key at fault."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgetlError(f"{where}: not valid JSON ({exc}){REBUILD}") from exc
        return read_fields(cls, data, Source(where, strict=False, remedy=REBUILD))

    @classmethod
    def read(cls, bundle: Path) -> EngineRecord:
        path = bundle / ENGINE_RECORD
        if not path.is_file():
            raise EdgetlError(f"{path}: missing{REBUILD}")
        return cls.parse(path.read_text(errors="replace"), str(path))
