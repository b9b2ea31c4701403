"""The machine a benchmark ran on, recorded with every result."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return None


def capture(threads: int, runtimes: dict[str, str]) -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtimes": runtimes,
    }
