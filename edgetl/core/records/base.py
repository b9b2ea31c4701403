"""What every record file shares: a schema version checked first, then the one fields-driven
reader (core/fields.py), lenient about keys a later edgetl added."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgetl import __version__
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source
from edgetl.core.outputs import check_label


def open_record(data: Any, path: Any, schemas: tuple[str, ...], remedy: str) -> Source:
    """The Source to read `data` with, after checking it is one of `schemas` (the current one
    first, then those this version still reads); a file of another version is named with
    the edgetl that wrote it."""
    if not isinstance(data, Mapping):
        raise EdgetlError(f"{path}: not a JSON object; the file is damaged")
    writer = f"edgetl {data.get('edgetl', 'of unknown version')}, schema {data.get('schema')}"
    if data.get("schema") not in schemas:
        raise EdgetlError(
            f"{path}: written by {writer}; this edgetl ({__version__}) reads {schemas[0]}. {remedy}"
        )
    return Source(
        str(path),
        strict=False,
        remedy=f" (written by {writer}); re-create it with this edgetl ({__version__})",
    )


def check_classes(names: list[str], path: Any) -> list[str]:
    """Class names as labels, never paths; each once."""
    if len(set(names)) != len(names):
        raise EdgetlError(f"{path}: classes repeat a name; re-create the file")
    return [check_label(name, "class", str(path)) for name in names]
