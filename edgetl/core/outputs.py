"""Where a command may write: never over its own inputs, never outside the folder a name
belongs in, only where it can write (checked before the long work), one writer at a time,
and nothing a killed run left behind kept forever.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from edgetl.core.errors import EdgetlError

# Names read from files (target profiles, recipes) become folder names: one path component
# of ordinary characters, so `name = "../../x"` can never address another directory.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
SCRATCH_PREFIX = "edgetl-"  # temporary directories: edgetl-<what>-<pid>-<random>


def check_name(name: str, what: str, source: str) -> str:
    """`name` as a safe single folder name (letters, digits, . _ + -), else exit 2."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise EdgetlError(
            f"{source}: {what} {name!r} is not a plain name (letters, digits, '.', '_', '+', "
            "'-'; no path separators or '..'): it becomes a directory name"
        )
    return name


def check_label(name: str, what: str, source: str) -> str:
    """A class name: any text a folder may be called (it is matched against folder names),
    but never a path: no separators, no NUL, not '.' or '..'."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise EdgetlError(
            f"{source}: {what} {name!r} is not a valid class name (empty, '.', '..', or holds "
            "'/', '\\' or NUL); re-create the file"
        )
    return name


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_not_input(
    out: Path,
    inputs: Mapping[str, Path | None],
    option: str = "--out",
    allowed_inside: Mapping[str, Path] | None = None,
) -> None:
    """Refuse an output that is, contains or lies inside an input (exit 2): with --force it
    would be deleted or rewritten. `allowed_inside[name]` is the one place inside an input
    where outputs belong (e.g. RUN/export/ for artifacts of RUN)."""
    target = out.expanduser().resolve()
    for name, given in inputs.items():
        if given is None or not given.exists():
            continue
        source = given.expanduser().resolve()
        place = (allowed_inside or {}).get(name)
        if place is not None and target != place.resolve() and _within(target, place.resolve()):
            continue
        if _within(source, target):
            relation = "is" if source == target else "contains"
        elif _within(target, source):
            relation = "lies inside"
        else:
            continue
        where = f" (outputs belong under {place})" if place is not None else ""
        raise EdgetlError(
            f"{option} {out} {relation} {name} {given}{where}: writing there could delete or "
            f"overwrite your input; choose an {option} outside it"
        )


def check_writable(path: Path, option: str) -> None:
    """Exit 2 now, before minutes of work, when `path` (a file or directory to create or
    replace) cannot be written: its nearest existing parent must be a writable directory."""
    parent = path.expanduser().absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EdgetlError(f"{option} {path}: {parent} is a file, not a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=parent, prefix=".edgetl-write-test-")
    except OSError as exc:
        raise EdgetlError(
            f"{option} {path}: cannot write in {parent} ({exc.strerror}); choose a writable "
            "location"
        ) from exc
    os.close(handle)
    os.unlink(probe)


def check_replaceable(final: Path, force: bool, what: str, marker: str | None) -> None:
    """Refuse to replace without --force, and with it anything that is not edgetl's own
    `what` (a directory holding `marker`) or an empty directory."""
    if not final.exists() and not final.is_symlink():
        return
    if _holds_nothing_finished(final):
        return  # a crashed run's empty folder is not an output: no --force to retry
    if not force:
        raise EdgetlError(
            f"{final} already exists; pass --force to replace this {what}, or choose another --out"
        )
    if final.is_symlink() or not final.is_dir():
        raise EdgetlError(f"{final}: is a file, not a {what} directory; choose another --out")
    if marker is not None and not (final / marker).is_file() and any(final.iterdir()):
        raise EdgetlError(
            f"{final}: not an edgetl {what} (no {marker}); --force replaces only edgetl's own "
            "directories. Remove it yourself or choose another --out"
        )


class _Lock:
    """An exclusive lock beside `final`, held by this process until `release` (or its death:
    the kernel drops flock locks with the process, so a killed run never blocks the next)."""

    def __init__(self, final: Path, what: str):
        import fcntl

        self.path = final.parent / f".{final.name}.lock"
        while True:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read(handle)
                os.close(handle)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise EdgetlError(
                    f"{final}: another edgetl process ({holder or 'pid unknown'}) is writing this "
                    f"{what} now; wait for it to finish or choose another --out"
                ) from exc
            # The holder before us may have removed the file after we opened it: then our
            # lock is on a file nobody else can see. Retry on the current one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(handle).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(handle)
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()}".encode())
        self.handle = handle

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.handle)


def _read(handle: int) -> str:
    try:
        return os.pread(handle, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


@contextmanager
def claim(
    final: Path, force: bool, what: str, marker: str | None = None, notes: list[str] | None = None
) -> Iterator[None]:
    """Make `final` this process's to write: its parent writable, no other edgetl writing it,
    not replaced without --force (nor anything not edgetl's with it), and the staging
    directories of killed runs removed (their names go to `notes`)."""
    check_writable(final, "--out")
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = _Lock(final, what)
    try:
        found = _leftovers(final)
        if notes is not None:
            notes += found
        check_replaceable(final, force, what, marker)
        yield
    finally:
        lock.release()


# What staged_dir leaves beside an output when its process dies: NAME is matched exactly
# (an --out of 'gx/cpu*' is a name, not a pattern that reaches another export's work).
PARTIAL = re.compile(r"\.(?P<name>.+)\.partial-(?P<pid>\d+)-[^/]+")
MOVED_ASIDE = re.compile(r"\.(?P<name>.+)\.old-(?P<pid>\d+)")
LOCK = re.compile(r"\.(?P<name>.+)\.lock")


def _holds_nothing_finished(final: Path) -> bool:
    """A directory that is empty, or holds only what killed edgetl writers leave (staging,
    a lock, a copy moved aside): nothing anyone finished is in it."""
    if final.is_symlink() or not final.is_dir():
        return False
    leftovers = (PARTIAL, LOCK, MOVED_ASIDE)
    return all(any(p.fullmatch(e.name) for p in leftovers) for e in final.iterdir())


def _unheld(path: Path) -> bool:
    """Remove a lock file nobody holds (its writer was killed: the kernel dropped the lock,
    the file stayed); whether it was removed."""
    import fcntl

    try:
        handle = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        return False  # held: a live writer
    try:
        if os.stat(path).st_ino == os.fstat(handle).st_ino:
            path.unlink()
            return True
        return False
    except FileNotFoundError:
        return False
    finally:
        os.close(handle)


def _leftovers(final: Path) -> list[str]:
    """Clean up after killed writers in `final`'s folder (we hold `final`'s lock): its own
    staging directories, and any output's whose process is gone; a replaced copy moved
    aside is restored when the kill came between the two renames (no `final`), else
    removed. Returns what was done, in words."""
    done = []
    for entry in sorted(final.parent.iterdir()):
        lock = LOCK.fullmatch(entry.name)
        if lock and lock["name"] != final.name and _unheld(entry):
            done.append(f"removed {entry}, left by a run that was killed")
            continue
        partial = PARTIAL.fullmatch(entry.name)
        if partial and entry.is_dir():
            if partial["name"] == final.name or not _alive(int(partial["pid"])):
                shutil.rmtree(entry, ignore_errors=True)
                done.append(f"removed {entry}, left by a run that was killed")
            continue
        aside = MOVED_ASIDE.fullmatch(entry.name)
        if aside and aside["name"] == final.name and entry.is_dir():
            if not final.exists() and not final.is_symlink():
                os.replace(entry, final)
                done.append(f"restored {final} from {entry}: a run was killed while replacing it")
            else:
                shutil.rmtree(entry, ignore_errors=True)
                done.append(f"removed {entry}, left by a run that was killed")
    return done


def cache_dir(kind: str, variable: str) -> Path:
    """edgetl's cache directory for `kind` (features, openvino): the environment variable
    when set, else $XDG_CACHE_HOME/edgetl/KIND (default ~/.cache/edgetl/KIND)."""
    given = os.environ.get(variable)
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgetl" / kind


def scratch_dir(final: Path) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory beside `final`, named as its staging is (`.NAME.partial-PID-`):
    one cleanup covers both when the process is killed (claim() sweeps them), and none is
    left in the system's temp dir (~26 MB per killed export)."""
    return tempfile.TemporaryDirectory(
        dir=final.parent, prefix=f".{final.name}.partial-{os.getpid()}-scratch-"
    )


def clean_scratch(what: str) -> list[Path]:
    """Remove temporary `what` directories whose process is gone from the system's temp
    dir, where earlier edgetl releases put them; returns them."""
    removed = []
    pattern = re.compile(rf"{SCRATCH_PREFIX}{re.escape(what)}-(\d+)-")
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{what}-*"):
        found = pattern.match(path.name)
        if found and path.is_dir() and not _alive(int(found.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
