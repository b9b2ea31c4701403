"""Terminal output: progress bars and tables go to stderr/stdout through rich."""

from __future__ import annotations

import os
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
    if not console.is_terminal and "COLUMNS" not in os.environ:
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
