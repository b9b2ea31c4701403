"""What `edgetl inspect` prints: the artifact in one line, then the ladder's path and the
sensitivity table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetl.core.records.sensitivity import METRICS, SensitivityReport
from edgetl.core.ui import stdout_console, table

SHOWN = 25


def print_inspect(
    artifact: Path,
    manifest: dict[str, Any],
    report: SensitivityReport | None,
    show_all: bool,
    placement: dict[str, Any],
) -> None:
    console = stdout_console()
    console.print(f"{artifact}: {manifest.get('target')} {manifest.get('precision')} "
                  f"({manifest.get('backend')}; {len(manifest.get('model_files', []))} model "
                  f"file(s)); {_accuracy(manifest)}")  # fmt: skip
    _print_placement(placement)
    if report is None:
        console.print("no sensitivity report (only INT8 artifacts carry one)")
        return
    metric = METRICS[report.metric]
    shown_path = [(s.name, _metric(report.metric, s.metric),
                   "-" if s.drop_upper_pts is None else f"{s.drop_upper_pts:.2f}",
                   s.float_layers, s.verdict or "-") for s in report.path]  # fmt: skip
    console.print(table(f"the guard's ladder ({metric} on all of val; kept: {report.kept})",
                        ["attempt", metric, "drop bound (pts)", "float layers", "verdict"],
                        shown_path))  # fmt: skip
    rows = report.layers if show_all else report.layers[:SHOWN]
    title = (f"layer sensitivity: {metric} with the layer alone float, on {report.images} val "
             f"images (FP32 {_pct(report.fp32)}, plain INT8 {_pct(report.plain)}); score: "
             f"{report.ranked_by}") if report.ranked else f"layers: {report.ranked_by}"  # fmt: skip
    shown = [(r.layer, r.precision, _pct(r.metric), "-" if r.score is None else f"{r.score:.3g}")
             for r in rows]  # fmt: skip
    console.print(table(title, ["layer", "precision", metric, "score"], shown))
    if len(rows) < len(report.layers):
        console.print(f"... {len(report.layers) - len(rows)} more layers (--all shows them)")


def _print_placement(placement: dict[str, Any]) -> None:
    console = stdout_console()
    where = f"{placement['backend']} on {placement['device']}, loaded here"
    if placement["error"]:
        console.print(f"op placement ({where}): {placement['error']}")
        return
    rows = placement["rows"]
    shown = [(r["op"], r["where"], r["precision"], r["count"]) for r in rows]
    total = sum(r["count"] for r in rows)
    console.print(table(f"op placement ({where}): {total} ops", ["op", "runs on", "precision",
                                                                  "count"], shown))  # fmt: skip


def _metric(name: str, value: float) -> str:
    return _pct(value) if name == "top1" else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _accuracy(manifest: dict[str, Any]) -> str:
    test = (manifest.get("accuracy") or {}).get("test") or manifest.get("test") or {}
    n = test.get("n")
    if "top1" in test:
        return f"test top-1 {_pct(test['top1'])} (FP32 {_pct(test.get('fp32_top1'))}, n={n})"
    if "map50_95" in test:
        fp32 = test.get("fp32_map50_95") or 0.0
        return f"test mAP50-95 {test['map50_95']:.4f} (FP32 {fp32:.4f}, n={n})"
    return "no test accuracy recorded"
