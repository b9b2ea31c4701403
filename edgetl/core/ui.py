"""Terminal output: progress bars and tables go to stderr/stdout through rich."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from edgetl.core.events import current

T = TypeVar("T")


def make_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, highlight=False)


def stdout_console() -> Console:
    """Tables go to stdout; when that is a file or pipe, keep them wide enough to read."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=160)
    return console


PIPED_EVERY_S = 3.0  # piped, a long step prints a line at least this often


class _Ticker:
    """Calls `tick` every PIPED_EVERY_S seconds on a thread, from start() until stop()."""

    def __init__(self, tick: Callable[[], None]):
        self._tick = tick
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(PIPED_EVERY_S):
            self._tick()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


class _Progress(Progress):
    """rich's bars on a terminal; piped (CI logs, `| tee`), where rich draws nothing until
    the end, one plain line per unfinished task every PIPED_EVERY_S seconds instead: a 12 s
    layer ranking was a 12 s silence in a log (tools/silences.py)."""

    def __init__(self, *columns: Any, console: Console, **options: Any):
        super().__init__(*columns, console=console, **options)
        piped = not console.is_terminal and not console.quiet
        self._ticker = _Ticker(self._lines) if piped else None

    def start(self) -> None:
        super().start()
        if self._ticker is not None:
            self._ticker.start()

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        super().stop()

    def _lines(self) -> None:
        for task in list(self.tasks):
            if task.finished or not task.started:
                continue
            total = f"/{task.total:.0f}" if task.total is not None else ""
            info = task.fields.get("info", "")
            line = f"{task.description}: {task.completed:.0f}{total} {info}".rstrip()
            self.console.print(f"{line} ({task.elapsed or 0:.0f} s)")


def progress() -> Progress:
    """A progress bar on the current reporter (core/events)."""
    console = current()
    return _Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=console.quiet,
    )


def counted(items: Sequence[T], what: str) -> Iterator[T]:
    """`items` one by one under a progress bar saying `what` (reading a large folder, every
    image hashed, was minutes without a word)."""
    with progress() as bar:
        task = bar.add_task(what, total=len(items), info="")
        for item in items:
            yield item
            bar.advance(task)


@contextmanager
def heartbeat(what: str) -> Iterator[None]:
    """A step without steps of its own to count (a library's call): a spinner on a terminal;
    piped, "WHAT ..." as it starts and "WHAT ... N s" every PIPED_EVERY_S seconds until it
    ends, so no log goes silent (on the current reporter, core/events)."""
    console = current()
    if console.quiet:
        yield
        return
    if console.is_terminal:
        with console.status(what):
            yield
        return
    started = time.monotonic()
    console.print(f"{what} ...")
    ticker = _Ticker(lambda: console.print(f"{what} ... {time.monotonic() - started:.0f} s"))
    ticker.start()
    try:
        yield
    finally:
        ticker.stop()


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    result = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        result.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        result.add_row(*(str(cell) for cell in row))
    return result


def fitted_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    width: int,
    priority: Sequence[str],
    wrap: str | None = None,
    caption: str = "",
) -> Table:
    """A table that fits `width` without cutting a value: columns are dropped, least wanted
    first (`priority` lists the wanted ones in order; others go first), and named in the
    caption. Only the `wrap` column (e.g. a description) may wrap onto more lines."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = {
        name: max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)
    }
    keep = list(columns)
    rank = {name: index for index, name in enumerate(priority)}
    droppable = sorted(
        (name for name in columns if name != columns[0] and name != wrap),
        key=lambda name: -rank.get(name, len(priority)),
    )

    def needed(names: list[str]) -> int:
        fixed = sum(widths[n] for n in names if n != wrap) + 3 * len(names) + 1
        return fixed + (min(widths[wrap], 16) if wrap in names else 0)

    hidden = []
    while needed(keep) > width and droppable:
        name = droppable.pop(0)
        keep.remove(name)
        hidden.append(name)
    notes = [caption] if caption else []
    if hidden:
        notes.append(
            f"hidden at this width: {', '.join(hidden)} (widen the terminal or use --json)"
        )
    result = Table(title=title, title_justify="left", caption="; ".join(notes) or None,
                   caption_justify="left")  # fmt: skip
    for name in keep:
        index = columns.index(name)
        result.add_column(
            name,
            justify="left" if index == 0 or name == wrap else "right",
            no_wrap=name != wrap,
            min_width=None if name == wrap else widths[name],
            overflow="fold",
        )
    for row in cells:
        result.add_row(*(row[columns.index(name)] for name in keep))
    return result


def image_count(drop_pts: float, n: int) -> str:
    """A drop in top-1 points as the images behind it: +1.00 pts of 900 -> '+9 of 900'.

    Enough digits that a table explains why a drop equal to the budget passed.
    """
    return f"{round(drop_pts * n / 100):+d} of {n}"
