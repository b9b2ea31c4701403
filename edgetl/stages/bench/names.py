"""The names artifacts go by in a bench report (its rows, and the key a baseline is matched
on), one per artifact."""

from __future__ import annotations

from pathlib import Path


def unique_names(names: list[str], paths: list[Path]) -> list[str]:
    """Each artifact's own name (TARGET-PRECISION), or its directory's name (then its path)
    where two would clash: two runs' `cpu-fp32` benched side by side are two rows, and a
    baseline entry matches one of them only."""
    for fallback in (lambda path: path.name, str):
        clashing = {name for name in names if names.count(name) > 1}
        names = [
            fallback(path) if name in clashing else name
            for name, path in zip(names, paths, strict=True)
        ]
    return names
