"""TOML data shipped with the package (targets/, calibration/) or given as a user's own file."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def shipped(package: str) -> dict[str, Any]:
    """Name (file stem) -> resource for every .toml file in `package`."""
    root = resources.files(package)
    return {entry.name[:-5]: entry for entry in root.iterdir() if entry.name.endswith(".toml")}


def load_toml(name: str, package: str, option: str, folder: str) -> tuple[dict[str, Any], str]:
    """Parse a shipped file by name, or a user's .toml by path; returns (data, source)."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise EdgetlError(f"{option} {name}: no such file")
        text, source = path.read_text(), str(path)
    else:
        files = shipped(package)
        if name not in files:
            raise EdgetlError(
                f"{option} {name}: unknown; known: {', '.join(sorted(files))} "
                "(or a path to your own .toml file)"
            )
        text, source = files[name].read_text(), f"{folder}/{name}.toml"
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise EdgetlError(f"{source}: invalid TOML ({exc})") from exc
