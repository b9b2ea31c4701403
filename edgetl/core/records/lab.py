"""The lab report (`edgetl bench ART --on ... --json`, schema edgetl.lab/1): per device, the
device's own edgetl.bench/1 report, or why there is none."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgetl import __version__
from edgetl.core.fields import read_fields, write_fields
from edgetl.core.files import atomic_write_json, read_json
from edgetl.core.records.base import open_record
from edgetl.core.records.bench import BenchReport
from edgetl.core.records.detector import DetectBenchReport

LAB_SCHEMA = "edgetl.lab/1"


@dataclass
class DeviceRun:
    device: str
    target: str  # the profile the lab file says the device runs
    status: Literal["ok", "failed", "regressed"]
    reason: str = ""  # why it failed, or what regressed
    seconds: float = 0.0  # wall time on this device: install, copy, build, bench, fetch
    copied: list[str] = field(default_factory=list)  # artifacts copied (not there already)
    layers: dict[str, Any] = field(default_factory=dict)  # artifact -> engine layer placement
    report: BenchReport | None = field(default=None, metadata={"omit": None})
    # A detector's bench there (edgetl.detect-bench/1), in place of `report`.
    detections: DetectBenchReport | None = field(default=None, metadata={"omit": None})
    # qemu (the lab file says so): its answers count, its latency is shown as emulated
    emulated: bool = False


@dataclass
class LabReport:
    created: str
    lab: str  # the lab file
    command: list[str]
    devices: list[DeviceRun]
    edgetl: str = __version__
    schema: str = LAB_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return write_fields(self)

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> LabReport:
        data = read_json(path, "lab report (from `edgetl bench --on ... --json`)")
        remedy = "Re-run `edgetl bench --on ... --json` with this version."
        return read_fields(cls, data, open_record(data, path, (LAB_SCHEMA,), remedy))
