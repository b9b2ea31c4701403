"""What a device's Python environment needs beside TensorRT to run edgetl's engines.

- Polygraphy: TrtRunner runs every engine through it (its CUDA buffer handling).
- NumPy below 2 for TensorRT before 10.16: those bindings predate NumPy 2's ABI and read
  arrays wrongly under it, silently. Measured on the real binding wheels (stub libraries,
  NumPy 2.4.6): `trt.Weights(np.arange(6, dtype=np.float32)).numpy()` is all zeros on every
  10.x release from 10.0.1 to 10.15.1, right from 10.16.0 on and on 11.4 (and right under
  NumPy 1.26). JetPack 6 brings 10.3; pip would put NumPy 2 beside it in a fresh venv.
"""

from __future__ import annotations

POLYGRAPHY = "polygraphy>=0.49"
NUMPY_2_FROM = (10, 16)  # the first TensorRT whose bindings read NumPy 2 arrays right
NUMPY_BELOW_2 = "numpy<2"


def release(version: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version string ("10.3.0.30" -> (10, 3))."""
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    major, minor = (parts + [0, 0])[:2]
    return major, minor


def needs_numpy_below_2(version: str) -> bool:
    return release(version) < NUMPY_2_FROM


def numpy_ok(tensorrt_version: str, numpy_version: str | None) -> bool:
    """Whether this NumPy works with this TensorRT's bindings."""
    if numpy_version is None or not needs_numpy_below_2(tensorrt_version):
        return True
    return release(numpy_version)[0] < 2


def pip_requirements(tensorrt_versions: list[str]) -> list[str]:
    """What to pip install beside edgetl's wheel for a bundle made for these releases."""
    constraint = [NUMPY_BELOW_2] if any(map(needs_numpy_below_2, tensorrt_versions)) else []
    return ["polygraphy", *constraint]
