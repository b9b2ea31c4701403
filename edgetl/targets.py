"""Device profiles: targets/*.toml loaded into frozen TargetProfile objects."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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
}


def parse_profile(data: dict[str, Any], source: str) -> TargetProfile:
    try:
        precisions = tuple(data["precisions"])
        unknown = [p for p in precisions if p not in PRECISIONS]
        if unknown:
            raise EdgetlError(f"{source}: unknown precisions {unknown}; use {PRECISIONS}")
        parity = {
            k: Parity(float(v["max_abs_diff"]), float(v["min_agreement"]))
            for k, v in data.get("parity", {}).items()
        }
        return TargetProfile(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            backend=str(data["backend"]),
            device=str(data.get("device", "CPU")),
            precisions=precisions,
            default_precision=str(data.get("default_precision", precisions[0])),
            opset=int(data.get("opset", 17)),
            threads=int(data.get("threads", 0)),
            parity=parity,
            options={k: v for k, v in data.items() if k not in KNOWN_KEYS},
            source=source,
        )
    except KeyError as exc:
        raise EdgetlError(f"{source}: missing key {exc}; see targets/cpu.toml") from exc


def _profile_files() -> dict[str, Any]:
    root = resources.files("edgetl.profiles")
    return {entry.name[:-5]: entry for entry in root.iterdir() if entry.name.endswith(".toml")}


def list_targets() -> list[TargetProfile]:
    return [load_target(name) for name in sorted(_profile_files())]


def load_target(name: str) -> TargetProfile:
    """A profile by name (targets/NAME.toml) or by path to a user's own .toml file."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise EdgetlError(f"--target {name}: no such file")
        text, source = path.read_text(), str(path)
    else:
        files = _profile_files()
        if name not in files:
            raise EdgetlError(
                f"--target {name}: unknown target; known: {', '.join(sorted(files))} "
                "(or a path to your own profile .toml)"
            )
        text, source = files[name].read_text(), f"targets/{name}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EdgetlError(f"{source}: invalid TOML ({exc})") from exc
    return parse_profile(data, source)
