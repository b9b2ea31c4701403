"""`edgetl inspect ART`: what an artifact is and, for INT8, its sensitivity report
(core/records/sensitivity.py) as a table and a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError
from edgetl.core.files import read_json
from edgetl.core.records.manifest import MANIFEST_FILE
from edgetl.core.records.sensitivity import METRICS, SENSITIVITY_FILE, SensitivityReport
from edgetl.stages.bench.reports import save_png

COLOURS = {"int8": "tab:blue", "float32": "tab:orange", "float16": "tab:green"}


def read_artifact(path: Path) -> tuple[dict[str, Any], SensitivityReport | None]:
    """The artifact's manifest (as written) and its sensitivity report, if it has one (INT8
    artifacts exported by this edgetl)."""
    if not (path / MANIFEST_FILE).is_file():
        raise EdgetlError(f"{path}: no {MANIFEST_FILE}; give an artifact folder (edgetl export)")
    manifest = read_json(path / MANIFEST_FILE, MANIFEST_FILE)
    if not (path / SENSITIVITY_FILE).is_file():
        return manifest, None
    return manifest, SensitivityReport.read(path)


def op_placement(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Which ops the artifact's runtime runs where and in which precision, loaded here
    (backends' Runtime.op_placement); `rows` sorted by count, or `error` saying why not."""
    from edgetl.backends import RuntimeSpec, get_runtime

    backend = str(manifest.get("backend"))
    spec = RuntimeSpec(list(manifest.get("model_files", [])), str(manifest.get("device", "CPU")),
                       dict(manifest.get("runtime_options") or {}),
                       int(manifest.get("threads") or 0))  # fmt: skip
    try:
        runtime = get_runtime(backend)
        if runtime.placement_needs_runtime and not runtime.available():
            raise EdgetlError(f"{backend} is not installed here (pip install it to see)")
        rows = runtime.op_placement(path, spec)
    except EdgetlError as exc:
        return {"backend": backend, "device": spec.device, "rows": [], "error": str(exc)}
    ordered = sorted(rows, key=lambda r: (-r.count, r.op))
    return {"backend": backend, "device": spec.device, "error": None,
            "rows": [vars(row) for row in ordered]}  # fmt: skip


def write_plot(report: SensitivityReport, path: Path, count: int = 30) -> None:
    """The `count` first layers' metric with each alone float (bars coloured by their final
    precision), FP32's and plain INT8's metric as lines; the ladder's path in the title."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EdgetlError(f"--plot {path}: needs matplotlib (pip install 'edgetl[plot]')") from exc
    if not report.ranked:
        raise EdgetlError(f"{path}: nothing to plot; {report.ranked_by}")
    rows = [row for row in report.layers if row.metric is not None][:count]
    figure, axis = plt.subplots(figsize=(8, 0.25 * len(rows) + 1.8))
    names = [row.layer[-48:] for row in rows][::-1]
    values = [100 * (row.metric or 0.0) for row in rows][::-1]
    axis.barh(names, values, color=[COLOURS.get(row.precision, "tab:gray") for row in rows][::-1])
    for value, label, colour in (
        (report.fp32, "FP32", "black"),
        (report.plain, "plain INT8", "red"),
    ):
        if value is not None:
            axis.axvline(
                100 * value, color=colour, linestyle="--", label=f"{label} {100 * value:.2f}"
            )
    axis.set_xlabel(
        f"{METRICS[report.metric]} (%) with the layer alone float, on {report.images} images"
    )
    axis.tick_params(axis="y", labelsize=6)
    axis.legend(fontsize=7, loc="lower right")
    axis.set_title(
        "path: " + " -> ".join(step.name for step in report.path) + f"; kept: {report.kept}",
        fontsize=8,
    )
    save_png(figure, path)
