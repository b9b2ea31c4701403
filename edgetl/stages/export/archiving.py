"""`export --archive`: OUT.tar.gz beside the artifact, written atomically, and never over a
file that is not the archive of the artifact this export replaces (without --force)."""

from __future__ import annotations

from pathlib import Path

from edgetl.core.artifact.archives import archive_manifest
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.records.manifest import MANIFEST_FILE


def archive_path(out: Path) -> Path:
    return out.parent / f"{out.name}.tar.gz"


def manifest_of(out: Path) -> bytes | None:
    """The manifest of the artifact at `out` that this export may replace (None: none)."""
    path = out / MANIFEST_FILE
    return path.read_bytes() if path.is_file() else None


def _of_replaced(path: Path, replaced: bytes | None) -> bool:
    """Whether the archive at `path` is edgetl's archive of the artifact being replaced."""
    return replaced is not None and archive_manifest(path) == replaced


def check_archive(out: Path, write: bool, force: bool, replaced: bytes | None) -> None:
    """--archive over an OUT.tar.gz that is not the archive of the artifact this export
    replaces (the user's, another model's) needs --force; exit 2 before any work."""
    path = archive_path(out)
    if write and path.exists() and not force and not _of_replaced(path, replaced):
        raise EdgetlError(
            f"--archive: {path} exists and is not an archive of the artifact at {out}; "
            "move it, or pass --force to overwrite it"
        )


def replace_archive(out: Path, write: bool, replaced: bytes | None) -> None:
    """OUT.tar.gz beside the artifact: rewritten with --archive; else removed only when it
    is edgetl's archive of the artifact just replaced (its manifest is that artifact's), so
    it cannot be mistaken for this one. Anything else there is left alone."""
    path = archive_path(out)
    if write:
        say(f"archive: {archive(out)}")
    elif path.is_file() and _of_replaced(path, replaced):
        path.unlink()
        say(f"removed {path}: it held the artifact this export replaced")


def archive(directory: Path) -> Path:
    """DIR.tar.gz beside the directory, written atomically."""
    import io
    import tarfile

    from edgetl.core.files import atomic_write_bytes

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    path = archive_path(directory)
    atomic_write_bytes(path, buffer.getvalue())
    return path
