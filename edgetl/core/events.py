"""Progress and messages as events: a stage says what happens (`say`, `section`, and core/ui's
`progress` and `heartbeat`) to the reporter of the context it runs in, instead of a console
handed down through every signature. The command line installs rich's console on stderr
(`reporting`); the Python API installs its own (quiet by default, or any rich Console, e.g.
one that records); a stage that runs another silences it with `quiet()`.

    with reporting(make_console()):
        finetune(...)          # its messages, and those of everything it calls, shown
    with quiet():
        export(...)            # nothing said, nothing drawn
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from rich.console import Console

_QUIET = Console(stderr=True, quiet=True)
_current: ContextVar[Console] = ContextVar("edgetl.reporter", default=_QUIET)


def current() -> Console:
    """The reporter of this context (a quiet one when none was installed)."""
    return _current.get()


@contextmanager
def reporting(reporter: Console) -> Iterator[Console]:
    """Events in this block go to `reporter`."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def install(reporter: Console) -> Console:
    """For a script's main: the rest of this context reports to `reporter`."""
    _current.set(reporter)
    return reporter


@contextmanager
def quiet() -> Iterator[Console]:
    """Nothing in this block is said or drawn (a stage run by another)."""
    with reporting(_QUIET) as reporter:
        yield reporter


def say(*objects: Any, **options: Any) -> None:
    """A message: a line of text (rich markup), or a table."""
    current().print(*objects, **options)


def section(title: str) -> None:
    """A heading between the steps of a long run."""
    current().rule(title)
