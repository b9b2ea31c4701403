"""Run and artifact directories: atomic writes, staged directories, checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise EdgetlError(f"{path}: no {what} here; is this the right directory?")
    from edgetl.core.artifact.archives import SUFFIXES

    if path.name.endswith((*SUFFIXES, ".tar")):
        raise EdgetlError(f"{path}: an archive, not a {what}; extract it first (tar xf)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgetlError(f"{path}: not valid JSON ({exc}); the {what} is damaged") from exc


@contextmanager
def staged_dir(
    final: Path,
    force: bool,
    what: str,
    marker: str | None = None,
    own: tuple[str, ...] | None = None,
    kept: list[str] | None = None,
) -> Iterator[Path]:
    """Build a directory under a hidden temporary name and move it into place only when complete.

    A crash or a failed check leaves no directory that looks finished; an existing one is
    replaced only with `force` (and only if it is edgetl's: it holds `marker`), and only
    after the new one is whole. Callers hold `outputs.claim(final)` around the whole stage,
    so no other edgetl process writes `final` meanwhile. With `own` (the names this stage
    writes), everything else in the replaced directory (a run's export/, the user's notes)
    moves into the new one instead of being deleted; their names are added to `kept`.
    """
    from edgetl.core.outputs import check_replaceable

    check_replaceable(final, force, what, marker)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-{os.getpid()}-")
    )
    try:
        yield staging
        # Checked again at the end: something may have appeared there meanwhile.
        check_replaceable(final, force, what, marker)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if own is not None and final.is_dir():
        for entry in sorted(final.iterdir()):
            if entry.name not in own and not (staging / entry.name).exists():
                os.replace(entry, staging / entry.name)
                if kept is not None:
                    kept.append(entry.name)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
