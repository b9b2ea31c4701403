"""Device profiles: targets/*.toml loaded into frozen TargetProfile objects."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edgetl.core.datafiles import load_toml, shipped
from edgetl.core.errors import EdgetlError
from edgetl.core.outputs import check_name

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    min_agreement: float


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    backend: str
    device: str
    precisions: tuple[str, ...]
    default_precision: str
    opset: int
    threads: int
    parity: dict[str, Parity]
    recipe: str = "nncf-mixed"  # default INT8 calibration recipe (calibration/NAME.toml)
    # A backend on the host that measures accuracy for a runtime the host may lack (e.g.
    # TensorRT measured with ONNX Runtime on the same Q/DQ graph); None: the target's own.
    host_proxy: str | None = None
    alias: str | None = None  # the name this profile was asked for by, when an alias
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def check_precision(self, precision: str | None) -> str:
        precision = precision or self.default_precision
        if precision not in self.precisions:
            raise EdgetlError(
                f"--precision {precision}: target {self.name!r} supports "
                f"{', '.join(self.precisions)}"
            )
        return precision

    @property
    def measured_on(self) -> str:
        """The backend whose runtime measures this target's accuracy on the host."""
        return self.host_proxy or self.backend


KNOWN_KEYS = {
    "name",
    "description",
    "backend",
    "device",
    "precisions",
    "default_precision",
    "opset",
    "threads",
    "parity",
    "recipe",
    "host_proxy",
}
# Runtime settings live in the backend's own table ([openvino], [tensorrt]), read by the
# backend's options dataclass (backends/<runtime>/options.py); this is where each key
# lived before (profile format 1), for an error that says where it went.
MOVED_KEYS = {
    "hint": "openvino",
    "model_cache": "openvino",
    "static_shape": "openvino",
    "inference_precision": "openvino",
    "streams": "openvino",
    "tensorrt_versions": "tensorrt",
    "workspace_mb": "tensorrt",
    "dla_core": "tensorrt",
    "device_parity": "tensorrt",
    "module": "tensorrt",
}


def parse_profile(data: dict[str, Any], source: str) -> TargetProfile:
    """The profile's common keys, typed; its backend's table is kept as `options` for the
    backend to read (backends/profiles.py checks it when the profile is loaded)."""
    _check_keys(data, source)
    try:
        if not isinstance(data["precisions"], list):
            raise EdgetlError(f'{source}: precisions must be a list, e.g. ["fp32", "int8"]')
        precisions = tuple(data["precisions"])
        unknown = [p for p in precisions if p not in PRECISIONS]
        if unknown:
            raise EdgetlError(f"{source}: unknown precisions {unknown}; use {PRECISIONS}")
        parity = {
            k: Parity(float(v["max_abs_diff"]), float(v["min_agreement"]))
            for k, v in data.get("parity", {}).items()
        }
        backend = str(data["backend"])
        table = data.get(backend, {})
        if not isinstance(table, dict):
            raise EdgetlError(f"{source}: {backend} must be a table ([{backend}])")
        return TargetProfile(
            name=check_name(str(data["name"]), "name", source),
            description=str(data.get("description", "")),
            backend=backend,
            device=str(data.get("device", "CPU")),
            precisions=precisions,
            default_precision=str(data.get("default_precision", precisions[0])),
            opset=int(data.get("opset", 17)),
            threads=int(data.get("threads", 0)),
            parity=parity,
            recipe=str(data.get("recipe", "nncf-mixed")),
            host_proxy=str(data["host_proxy"]) if "host_proxy" in data else None,
            options=dict(table),
            source=source,
        )
    except KeyError as exc:
        raise EdgetlError(f"{source}: missing key {exc}; see targets/cpu.toml") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise EdgetlError(
            f"{source}: a value has the wrong type ({exc}); see targets/cpu.toml"
        ) from exc


def _check_keys(data: dict[str, Any], source: str) -> None:
    backend = data.get("backend")
    unknown = sorted(set(data) - KNOWN_KEYS - {backend})
    if not unknown:
        return
    moved = [f"{key} goes in the [{MOVED_KEYS[key]}] table" for key in unknown if key in MOVED_KEYS]
    raise EdgetlError(
        f"{source}: unknown keys {unknown}; known: {', '.join(sorted(KNOWN_KEYS))} and the "
        f"backend's own table [{backend}]" + (f" ({'; '.join(moved)})" if moved else "")
    )


def list_targets() -> list[TargetProfile]:
    """Every shipped profile; aliases come with `alias` set to their own name."""
    return [load_target(name) for name in sorted(shipped("edgetl.profiles"))]


def load_target(name: str, _seen: tuple[str, ...] = ()) -> TargetProfile:
    """A profile by name (targets/NAME.toml) or by path to a user's own profile .toml.

    A file holding only `alias = "OTHER"` (and a description) stands for that profile.
    """
    data, source = load_toml(name, "edgetl.profiles", "--target", "targets")
    if "alias" in data:
        if set(data) - {"alias", "description"}:
            raise EdgetlError(f"{source}: an alias holds only alias and description")
        other = data["alias"]
        if not isinstance(other, str):
            raise EdgetlError(f"{source}: alias must be a profile name (a string)")
        if other in (*_seen, name):
            chain = " -> ".join((*_seen, name, other))
            raise EdgetlError(f"{source}: the alias refers back to itself ({chain})")
        return replace(load_target(other, (*_seen, name)), alias=name)
    return parse_profile(data, source)
