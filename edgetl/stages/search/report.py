"""The search's front as a PNG (its table is the command line's: cli/output.py)."""

from __future__ import annotations

from pathlib import Path

from edgetl.stages.bench.reports import save_png
from edgetl.stages.search.state import SearchState, Status


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
