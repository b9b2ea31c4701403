"""Versions of the libraries that shaped an artifact, recorded in every run and manifest."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("edgetl", "torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "numpy")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found
