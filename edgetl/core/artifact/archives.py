"""An artifact archive (`export --archive`) given where a directory is expected, unpacked
safely beside it: one top-level directory, only regular files and directories, no absolute
paths, no `..`, no links, and every file's size the one its manifest lists.

The result is then read like any artifact (every sha256 checked), so the archive only has
to be safe to unpack; being the right artifact is the manifest's job.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from edgetl.core.errors import EdgetlError

SUFFIXES = (".tar.gz", ".tgz")
UNLISTED = ("manifest.json", "signature.json")  # the only files a manifest does not list
MAX_MANIFEST_BYTES = 16 << 20


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(SUFFIXES)


def unpack_archive(archive: Path) -> Path:
    """The directory `archive` holds, unpacked beside it (or the one already there from an
    earlier unpack of the same archive); exit 2 naming the member at fault."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        top = _top_directory(archive, members)
        target = archive.parent / top
        manifest = _manifest_bytes(archive, tar, members, top)
        if target.exists():
            _check_unpacked(archive, target, manifest)
            return target  # this archive, unpacked before; reading it checks every sha256
        sizes = _listed_sizes(archive, manifest)
        for member in members:
            _check_member(archive, member, top, sizes)
        staging = Path(tempfile.mkdtemp(dir=archive.parent, prefix=f".{top}.unpack-"))
        try:
            for member in members:
                relative = PurePosixPath(member.name).relative_to(top)
                destination = staging.joinpath(*relative.parts)
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise EdgetlError(f"{archive}: {member.name} cannot be read")
                with source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def archive_manifest(archive: Path) -> bytes | None:
    """The manifest an artifact archive holds (None: not a readable edgetl archive): what
    tells whether OUT.tar.gz is an archive of a given artifact."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            return _manifest_bytes(archive, tar, members, _top_directory(archive, members))
    except (OSError, tarfile.TarError, EdgetlError, EOFError):
        return None


def _top_directory(archive: Path, members: list[tarfile.TarInfo]) -> str:
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    if len(tops) != 1:
        raise EdgetlError(f"{archive}: not one artifact directory (top level: {sorted(tops)})")
    top = tops.pop()
    if top in ("", ".", "..") or top.startswith("/"):
        raise EdgetlError(f"{archive}: top-level name {top!r} is not a directory name")
    return top


def _check_unpacked(archive: Path, target: Path, manifest: bytes) -> None:
    """A folder already where the archive unpacks is reused only when it is this archive's
    artifact (the same manifest, whose digest covers every file): another model's folder of
    the same name answered for it before. Never replaced without the user: exit 2."""
    existing = target / "manifest.json"
    if not existing.is_file():
        raise EdgetlError(f"{archive}: {target} exists and is not its artifact; move it")
    if existing.read_bytes() != manifest:
        raise EdgetlError(
            f"{archive}: {target} holds another artifact (its manifest differs from the "
            "archive's), so it is not reused; move or remove it, or put the archive in "
            "another folder, and run again"
        )


def _manifest_bytes(
    archive: Path, tar: tarfile.TarFile, members: list[tarfile.TarInfo], top: str
) -> bytes:
    manifest = next((m for m in members if m.name == f"{top}/manifest.json"), None)
    if manifest is None or not manifest.isfile() or manifest.size > MAX_MANIFEST_BYTES:
        raise EdgetlError(f"{archive}: no {top}/manifest.json; not an edgetl artifact archive")
    handle = tar.extractfile(manifest)
    return handle.read() if handle else b"{}"


def _listed_sizes(archive: Path, manifest: bytes) -> dict[str, int]:
    try:
        files = json.loads(manifest).get("files", {})
        return {str(name): int(entry["bytes"]) for name, entry in files.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise EdgetlError(f"{archive}: its manifest.json is damaged ({exc})") from exc


def _check_member(archive: Path, member: tarfile.TarInfo, top: str, sizes: dict[str, int]) -> None:
    name = PurePosixPath(member.name)
    where = f"{archive}: member {member.name!r}"
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise EdgetlError(f"{where} points outside the artifact directory; not unpacked")
    if not (member.isfile() or member.isdir()):
        raise EdgetlError(f"{where} is a link or special file; not unpacked")
    if member.isdir():
        return
    relative = name.relative_to(top).as_posix()
    if relative in UNLISTED:
        return
    if relative not in sizes:
        raise EdgetlError(f"{where} is not listed in its manifest; not unpacked")
    if member.size != sizes[relative]:
        raise EdgetlError(
            f"{where} is {member.size} bytes, its manifest says {sizes[relative]}; not unpacked"
        )
