"""Device profiles: targets/*.toml loaded into frozen TargetProfile objects."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from edgetl.core.datafiles import load_toml, shipped
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields
from edgetl.core.outputs import check_name

Precision = Literal["fp32", "fp16", "int8"]
BackendName = Literal["onnxruntime", "openvino", "tensorrt", "executorch"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
BACKEND_NAMES: tuple[BackendName, ...] = get_args(BackendName)


@dataclass(frozen=True)
class Parity:
    """How close a compiled graph's logits must stay to its reference's: an absolute bound,
    a bound relative to the logits' scale (core/measures/parity.relative_error), or both, and top-1
    agreement. FP16 needs the relative one: its error grows with the values it rounds (one
    ulp is 2^-11 of them), so an absolute 0.1 passed logits of 5 and failed logits of 20
    from the same correct graph (tools/fp16_parity.py)."""

    max_abs_diff: float | None = None
    min_agreement: float = 1.0
    max_rel_diff: float | None = None

    def __post_init__(self) -> None:
        if self.max_abs_diff is None and self.max_rel_diff is None:
            raise EdgetlError("a parity tolerance needs max_abs_diff, max_rel_diff or both")


@dataclass(frozen=True)
class TargetProfile:
    """A target profile: the common keys of targets/NAME.toml, typed; `options` is the
    backend's own table ([openvino], [tensorrt]), which that backend's options dataclass
    reads (backends/profiles.py checks it when the profile is loaded)."""

    name: str
    backend: BackendName
    precisions: tuple[Precision, ...]
    default_precision: Precision
    parity: dict[str, Parity]
    description: str = ""
    device: str = "CPU"
    opset: int = 17
    threads: int = 0
    recipe: str = "nncf-mixed"  # default INT8 calibration recipe (calibration/NAME.toml)
    # A backend on the host that measures accuracy for a runtime the host may lack (e.g.
    # TensorRT measured with ONNX Runtime on the same Q/DQ graph); None: the target's own.
    host_proxy: BackendName | None = None
    # What the INT8 guard's float layers run in: fp16 where the target's runtime runs FP16
    # well (TensorRT, OpenVINO GPU/NPU, CPUs with FP16 math), when the guard accepts it.
    float_layers: str = "fp32"
    alias: str | None = None  # the name this profile was asked for by, when an alias
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def check_precision(self, precision: str | None) -> Precision:
        chosen = precision or self.default_precision
        for known in self.precisions:
            if chosen == known:
                return known
        raise EdgetlError(
            f"--precision {chosen}: target {self.name!r} supports {', '.join(self.precisions)}"
        )

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
    "float_layers",
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
    """The profile in `data`, read by the one record reader (a wrong type names the key); its
    backend's table is kept as `options` for the backend to read."""
    _check_keys(data, source)
    if "precisions" in data and not isinstance(data["precisions"], list):
        raise EdgetlError(f'{source}: precisions must be a list, e.g. ["fp32", "int8"]')
    common = {key: value for key, value in data.items() if key in KNOWN_KEYS}
    if isinstance(common.get("precisions"), list) and common["precisions"]:
        common.setdefault("default_precision", common["precisions"][0])
    table = data.get(str(data.get("backend")), {})
    profile = read_fields(TargetProfile, {**common, "options": table}, Source(source))
    if not isinstance(table, dict):
        raise EdgetlError(f"{source}: {profile.backend} must be a table ([{profile.backend}])")
    if profile.default_precision not in profile.precisions:
        raise EdgetlError(
            f"{source}: default_precision {profile.default_precision} is not in precisions"
        )
    if profile.float_layers not in ("fp32", "fp16"):
        given = profile.float_layers
        raise EdgetlError(f'{source}: float_layers = "{given}": give "fp32" or "fp16"')
    check_name(profile.name, "name", source)
    return replace(profile, source=source)


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
