"""Where a target's model runs on this machine: its own runtime, or the host proxy its profile
names (with the reason). The one rule load, export, bench and compare share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from edgetl.backends.base import Runtime
from edgetl.backends.registry import get_compiler, get_runtime
from edgetl.core.errors import EdgetlError


class Placeable(Protocol):
    """A target profile or an artifact's manifest: what resolve() needs of either."""

    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def host_proxy(self) -> str | None: ...


@dataclass(frozen=True)
class Placement:
    backend: Runtime  # the target's own runtime (its compiler makes the artifact)
    runtime: Runtime  # what runs the model here: `backend`, or the host proxy
    device: str  # the device it runs on here
    note: str = ""  # why it is not the target's own runtime or device; "" when it is

    @property
    def proxy(self) -> str | None:
        """The host proxy's name when it stands in for the target's runtime."""
        return self.runtime.name if self.runtime.name != self.backend.name else None

    def compiler(self) -> Any:
        """The target's compiler (host side: export, search), a backends.compiler.Compiler."""
        return get_compiler(self.backend.name)

    def measurer(self) -> Any:
        """The compiler of what runs the model here: it runs in-memory graphs (the guard's
        candidates, host checks) on `runtime`."""
        return get_compiler(self.runtime.name)


def resolve(target: Placeable, where: str, *, export: bool = False) -> Placement:
    """The runtime and device that run `target`'s model here, or EdgetlError naming `where`
    (the target or artifact) and what to install.

    At export a profile with a host proxy is always measured on the proxy (the target's
    runtime builds its engine on the device); elsewhere the proxy stands in only when the
    target's runtime is absent. A runtime whose compiled model does not depend on the device
    (OpenVINO IR) runs on a device this host has when the target's is absent.
    """
    backend = get_runtime(target.backend)
    proxy = target.host_proxy
    if proxy is not None and (export or not backend.available()):
        runtime = get_runtime(proxy)
        if not runtime.available():
            raise EdgetlError(
                f"{where}: neither {backend.name} nor its host proxy {proxy} is installed here; "
                f"install {proxy} (pip install {runtime.module}) to measure it on this host"
            )
        # No note: at export the proxy is the profile's plan, and where it stands in for an
        # absent runtime each caller says so in its own terms (bench, predict, compare).
        return Placement(backend, runtime, target.device)
    if not backend.available():
        raise EdgetlError(
            f"{where}: runtime {backend.name} is not installed here; install it (docs/device.md: "
            "on the device) or use a target it has (see `edgetl targets`)"
        )
    if not export:
        return Placement(backend, backend, target.device)  # the device is checked at load
    try:
        backend.check_device(target.device)
    except EdgetlError:
        if backend.host_device is None:
            raise
        return Placement(
            backend,
            backend,
            backend.host_device,
            f"{target.device} is not on this machine: the {backend.name} model does not depend "
            f"on the device, so it is exported here and measured on {backend.host_device}; it "
            f"is compiled for {target.device} where it runs",
        )
    return Placement(backend, backend, target.device)
