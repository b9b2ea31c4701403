"""The search for people: one table of every candidate, and the front as a PNG."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from edgetl.core.ui import table
from edgetl.stages.bench.reports import save_png
from edgetl.stages.search.state import SearchState, Status


def print_search(console: Console, result: object) -> None:
    state: SearchState = result.state  # type: ignore[attr-defined]
    rows = []
    for record in sorted(state.records.values(), key=lambda r: (r.p50_ms or 1e9, r.key)):
        shown = record.status in (Status.ON_THE_FRONT, Status.CHOSEN)
        rows.append([
            record.key,
            "-" if record.p50_ms is None else f"{record.p50_ms:.2f}",
            "-" if record.p90_ms is None else f"{record.p90_ms:.2f}",
            "-" if record.size_mb is None else f"{record.size_mb:.2f}",
            "-" if record.val_top1 is None else f"{record.val_top1:.2%}",
            f"{record.test_top1:.2%}" if shown and record.test_top1 is not None else "",
            record.runtime or "-",
            record.status + (f" ({record.reason})" if record.reason else ""),
        ])  # fmt: skip
    if state.reference is not None:  # timed in the same rounds as the candidates
        ref = state.reference
        rows.append([f"reference: {Path(ref['artifact']).name}", f"{ref['p50_ms']:.2f}",
                     f"{ref['p90_ms']:.2f}", f"{ref['size_mb']:.2f}", "", "", ref["runtime"],
                     "--reference (not a candidate)"])  # fmt: skip
    settings = state.settings
    title = (
        f"edgetl search on {settings['data']} for {settings['target']}: "
        f"{settings['latency']} <= {state.budget_words()}"
        + (f", <= {settings['max_size_mb']:g} MB" if settings.get("max_size_mb") else "")
    )
    columns = ["candidate", "p50 ms", "p90 ms", "MB", "val top-1 (chosen on)",
               "test top-1 (not chosen on)", "timed with", "status"]  # fmt: skip
    console.print(table(title, columns, rows))
    if state.stopped:
        console.print(state.stopped)
    if state.chosen:
        console.print(f"chosen: {state.chosen} -> {result.out / 'chosen'}")  # type: ignore[attr-defined]


def write_plot(state: SearchState, path: Path) -> bool:
    """Latency against val top-1, size as the marker; False when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours = {
        Status.CHOSEN: "tab:red",
        Status.ON_THE_FRONT: "tab:blue",
        Status.DOMINATED: "tab:gray",
    }
    for record in state.records.values():
        if record.val_top1 is None or record.p50_ms is None:
            continue
        axis.scatter(record.p50_ms, 100 * record.val_top1, s=20 + 40 * (record.size_mb or 0),
                     color=colours.get(record.status, "tab:gray"), alpha=0.7)  # fmt: skip
        axis.annotate(record.key, (record.p50_ms, 100 * record.val_top1), fontsize=7)
    if state.budget_ms is not None:
        axis.axvline(state.budget_ms, color="tab:red", linestyle="--", alpha=0.5)
    axis.set_xlabel("p50 latency (ms, batch 1, on the target's runtime)")
    axis.set_ylabel("val top-1 (%)")
    axis.set_title("search: red chosen, blue the front, marker size = MB")
    axis.grid(alpha=0.3)
    save_png(figure, path)
    return True
