"""A command's verdict over the lab: one result per device, passed when every one is ok."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class DeviceResult(Protocol):
    status: str  # "ok", or why not (failed, regressed)

    def line(self) -> str: ...


R = TypeVar("R", bound=DeviceResult)


@dataclass(frozen=True)
class PerDevice(Generic[R]):
    devices: list[R] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(run.status == "ok" for run in self.devices)

    @property
    def failures(self) -> list[str]:
        return [run.line() for run in self.devices if run.status != "ok"]
