"""The wheel must carry every subpackage: pyproject lists them by hand."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "edgetl").rglob("__init__.py")
    }
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert {"edgetl.profiles", "edgetl.recipes"} <= listed  # targets/ and calibration/


def test_the_bundle_wheel_carries_the_same_packages() -> None:
    from edgetl.core.artifact.selfwheel import PACKAGES

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert set(PACKAGES) == set(listed)


def test_the_default_install_is_the_device_side() -> None:
    """torch, timm, nncf and scikit-learn come with `edgetl[host]` only."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    default = " ".join(project["dependencies"])
    for name in ("torch", "timm", "nncf", "scikit-learn", "onnxruntime", "openvino"):
        assert name not in default
        assert any(d.startswith(name) for d in project["optional-dependencies"]["host"])
