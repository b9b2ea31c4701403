"""The machine a benchmark ran on, recorded with every result."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def nvidia_smi(field: str) -> str | None:
    """One property of the first NVIDIA GPU (e.g. name, compute_cap), or None without one.

    From nvidia-smi: the device side has no torch to ask.
    """
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        out = subprocess.run(
            [tool, f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def gpu_name() -> str | None:
    return nvidia_smi("name")


def governor() -> str | None:
    """The CPU frequency governor (performance, powersave, ...) where Linux exposes it."""
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return path.read_text().strip() if path.is_file() else None


def jetson() -> dict[str, str] | None:
    """Power mode and L4T release on a Jetson (nvpmodel, /etc/nv_tegra_release); else None."""
    release = Path("/etc/nv_tegra_release")
    tool = shutil.which("nvpmodel")
    if not release.is_file() and tool is None:
        return None
    found: dict[str, str] = {}
    if release.is_file():
        found["l4t"] = release.read_text().splitlines()[0].strip()
    if tool is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found["nvpmodel"] = subprocess.run(
                [tool, "-q"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
    return found


def capture(threads: int, runtimes: dict[str, str]) -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "governor": governor(),
        "gpu": gpu_name(),
        "jetson": jetson(),
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtimes": runtimes,
    }
