"""Every byte an artifact loads is accounted for: listed files with their sha256, inside the
artifact directory, and a digest of the manifest itself over its canonical content.

The digest catches an accidental or careless edit (a class name, a mean, a file list); a
deliberate one recomputes it, which is what signing (edgetl/core/artifact/signing.py) is for.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from edgetl.core.artifact.onnx_wire import WireError, external_locations
from edgetl.core.errors import EdgetlError

DIGEST_KEY = "digest"


def canonical(data: dict[str, Any]) -> bytes:
    """The manifest's content without its digest, in one byte form: sorted keys, no spaces."""
    content = {key: value for key, value in data.items() if key != DIGEST_KEY}
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


def check_digest(data: dict[str, Any], path: Path | str) -> str:
    recorded = data.get(DIGEST_KEY)
    try:
        found = digest(data)
    except ValueError as exc:  # NaN or infinity in the file: not what export writes
        raise EdgetlError(f"{path}: holds a non-finite number ({exc}); re-run export") from exc
    if recorded != found:
        raise EdgetlError(
            f"{path}: edited after export (its digest {str(recorded)[:12]}... does not match "
            f"its content {found[:12]}...); an edited class name or preprocessing would give "
            "wrong answers silently. Restore the file or re-run export"
        )
    return found


def check_member(name: str, path: Path | str) -> str:
    """A file name from a manifest: relative, inside the artifact, no '..', no backslash."""
    pure = PurePosixPath(name)
    if not name or "\\" in name or "\0" in name or pure.is_absolute() or ".." in pure.parts:
        raise EdgetlError(
            f"{path}: lists {name!r}, which is not a file inside the artifact directory; "
            "the manifest is damaged or hostile, re-run export"
        )
    return name


def check_loaded_files(files: dict[str, Any], loaded: list[str], path: Path | str) -> None:
    """Everything the runtime will open must be listed with a sha256."""
    for name in files:
        check_member(name, path)
        entry = files[name]
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise EdgetlError(f"{path}: {name!r} has no sha256 in 'files'; re-run export")
    for name in loaded:
        check_member(name, path)
        if name not in files:
            raise EdgetlError(
                f"{path}: {name!r} would be loaded but is not listed with a sha256 in 'files'; "
                "the manifest was edited, re-run export"
            )


def check_external_data(root: Path, files: dict[str, Any], models: Sequence[str] = ()) -> None:
    """An ONNX file's external weights must be listed files too (ONNX Runtime would read
    any file it names inside the directory). Every `.onnx` file, and every model file
    whatever its name (ONNX Runtime loads `model.bin` if it is ONNX): one that parses as
    ONNX is checked, read from its wire format (core/artifact/onnx_wire.py), so the device side,
    which has no onnx package, checks it too."""
    for name in dict.fromkeys([*(n for n in files if n.endswith(".onnx")), *models]):
        try:
            locations = _locations(root / name)
        except (OSError, WireError) as exc:
            if not name.endswith(".onnx"):
                continue  # not ONNX (an OpenVINO IR, an engine): nothing of this kind to check
            raise EdgetlError(f"{root / name}: not a readable ONNX model ({exc})") from exc
        base = PurePosixPath(name).parent
        for location in locations:
            checked = check_member(location, root / name)
            if (base / checked).as_posix() not in files:
                raise EdgetlError(
                    f"{root / name}: its external data {location!r} is not a file listed "
                    "in the manifest; re-run export"
                )


def _locations(path: Path) -> list[str]:
    """The file's external-data locations, read through a memory map (a model of hundreds
    of MB is walked, not copied; a file that is not ONNX fails within its first bytes)."""
    if path.stat().st_size == 0:
        return external_locations(b"")
    with (
        path.open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
    ):
        try:
            return external_locations(mapped)
        except WireError as exc:
            # Re-raised outside the map: the walk's frames hold views of it, and a map
            # with views alive cannot close.
            message = str(exc)
    raise WireError(message)
