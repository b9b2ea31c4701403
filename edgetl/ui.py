"""Terminal output: progress bars and tables go to stderr/stdout through rich."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def make_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, highlight=False)


def stdout_console() -> Console:
    """Tables go to stdout; when that is a file or pipe, keep them wide enough to read."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    return console


def progress(console: Console) -> Progress:
    return Progress(
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


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    result = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        result.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        result.add_row(*(str(cell) for cell in row))
    return result


def image_count(drop_pts: float, n: int) -> str:
    """A drop in top-1 points as the images behind it: +1.00 pts of 900 -> '+9 of 900'.

    Enough digits that a table explains why a drop equal to the budget passed.
    """
    return f"{round(drop_pts * n / 100):+d} of {n}"
