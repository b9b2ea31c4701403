"""edgetl's own wheel, written from the installed package, so that a bundle carries the exact
edgetl that made it to a device whose package index has no edgetl (a Jetson's).

`pip wheel .` needs the source tree, which an install from PyPI does not have; a wheel is a
zip of the package files and its metadata, so it is written here from what is installed
(regular or editable install alike). Its default requirements are the device side's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from importlib import metadata, resources
from pathlib import Path

from edgetl import __version__
from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_bytes

# Every package of the distribution (tests/test_packaging.py keeps this equal to pyproject's).
PACKAGES = (
    "edgetl",
    "edgetl.core",
    "edgetl.core.artifact",
    "edgetl.core.data",
    "edgetl.core.measures",
    "edgetl.core.records",
    "edgetl.backends",
    "edgetl.backends.onnxruntime",
    "edgetl.backends.openvino",
    "edgetl.backends.tensorrt",
    "edgetl.backends.executorch",
    "edgetl.train",
    "edgetl.train.detector",
    "edgetl.quantize",
    "edgetl.quantize.guard",
    "edgetl.stages",
    "edgetl.stages.detect",
    "edgetl.stages.export",
    "edgetl.stages.finetune",
    "edgetl.stages.bench",
    "edgetl.stages.lab",
    "edgetl.stages.search",
    "edgetl.cli",
    "edgetl.profiles",
    "edgetl.recipes",
    "edgetl.corruptions",
)
SUFFIXES = (".py", ".toml")
WHEEL = (
    "Wheel-Version: 1.0\nGenerator: edgetl selfwheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
)
EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same edgetl gives the same bytes


def wheel_name() -> str:
    return f"edgetl-{__version__}-py3-none-any.whl"


def package_files() -> dict[str, bytes]:
    """Archive path -> content of every module and data file of the installed edgetl.

    Read from edgetl's folder where the package is there: importlib.resources imports each
    package it is asked for (edgetl.quantize imports torch: 3.5 s). Data packages mapped
    elsewhere in an editable install (profiles, recipes) import nothing."""
    root = resources.files("edgetl")
    found: dict[str, bytes] = {}
    for package in PACKAGES:
        folder = package.replace(".", "/")
        inside = root.joinpath(*package.split(".")[1:])
        for entry in (inside if inside.is_dir() else resources.files(package)).iterdir():
            if entry.is_file() and entry.name.endswith(SUFFIXES):
                found[f"{folder}/{entry.name}"] = entry.read_bytes()
    return found


def code_digest() -> str:
    """sha256 over every module and data file of this edgetl: a managed device env built
    from another edgetl of the same version number (a development build) is rebuilt."""
    total = hashlib.sha256()
    for name, data in sorted(package_files().items()):
        total.update(f"{name} {hashlib.sha256(data).hexdigest()}\n".encode())
    return total.hexdigest()


def build_wheel(out_dir: Path) -> Path:
    """Write edgetl-VERSION-py3-none-any.whl into `out_dir`; returns its path."""
    dist = metadata.distribution("edgetl")
    info = f"edgetl-{__version__}.dist-info"
    files = package_files()
    # An egg-info (a source tree on sys.path) has the same fields as PKG-INFO.
    fields = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not fields:
        raise EdgetlError("edgetl's own metadata is not found; reinstall edgetl (pip install .)")
    files[f"{info}/METADATA"] = fields.encode()
    files[f"{info}/WHEEL"] = WHEEL.encode()
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files[f"{info}/entry_points.txt"] = entry_points.encode()
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in sorted(files.items())]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in sorted(files.items()):
            item = zipfile.ZipInfo(name, EPOCH)
            item.compress_type = zipfile.ZIP_DEFLATED
            item.external_attr = 0o644 << 16
            wheel.writestr(item, data)
    path = out_dir / wheel_name()
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
