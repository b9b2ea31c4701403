"""Which CUDA device is here, from the CUDA driver itself (libcuda, through ctypes) and, on a
Jetson, from the device tree and the L4T release file.

nvidia-smi cannot tell: JetPack 6 does not ship it, so an engine record's GPU was `None` on
both sides and any engine passed. The driver API answers on every CUDA machine, Jetson
included, without torch or CUDA's Python packages.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

COMPUTE_CAPABILITY_MAJOR, COMPUTE_CAPABILITY_MINOR = 75, 76  # CUdevice_attribute
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


@dataclass(frozen=True)
class CudaDevice:
    name: str
    compute_capability: str


def first_device() -> CudaDevice | str:
    """CUDA device 0, or why there is none (the reason, in words)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no CUDA driver (libcuda.so.1 not found)"
    if cuda.cuInit(0) != 0:
        return "the CUDA driver finds no usable device (cuInit failed)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "the CUDA driver reports no device"
    device = ctypes.c_int(0)
    cuda.cuDeviceGet(ctypes.byref(device), 0)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), COMPUTE_CAPABILITY_MAJOR, device)
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), COMPUTE_CAPABILITY_MINOR, device)
    return CudaDevice(name.value.decode(errors="replace"), f"{major.value}.{minor.value}")


def identity() -> dict[str, str | None]:
    """What an engine is tied to: the GPU and its compute capability; on a Jetson also the
    module (device tree) and the L4T release."""
    device = first_device()
    found = device if isinstance(device, CudaDevice) else None
    model = None
    if DEVICE_TREE_MODEL.is_file():
        model = DEVICE_TREE_MODEL.read_bytes().rstrip(b"\0").decode(errors="replace")
    release = None
    if TEGRA_RELEASE.is_file():
        release = TEGRA_RELEASE.read_text().splitlines()[0].strip()
    return {
        "gpu": found.name if found else None,
        "compute_capability": found.compute_capability if found else None,
        "module": model,
        "l4t": release,
    }
