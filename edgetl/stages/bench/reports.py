"""Bench reports for people and CI systems: Markdown (PR comments), JUnit XML, a PNG plot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_bytes, atomic_write_text
from edgetl.core.records import BenchReport, BenchResult
from edgetl.core.records.detector import DetectBenchEntry

DASH = "-"  # a value not measured (e.g. cold start with --no-cold), never a made-up 0
PROXY = "proxy"  # latency of a host proxy standing in for the device's runtime: not shown
# Which columns a narrow terminal keeps, most wanted first (the artifact's name always).
PRIORITY = [
    "artifact", "top-1", "p50 ms", "p50 x", "MB", "agree", "p90 ms", "n", "MB x", "p99 ms",
    "1st ms", "RSS MB", "CV", "img/s", "top-5", "load s",
]  # fmt: skip


def ratio_note(report: BenchReport) -> str:
    """What the ratio columns are relative to."""
    return f"p50 x, MB x: ratios to {report.results[0].name}" if len(report.results) > 1 else ""


def rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """The table every view shows; with several artifacts, ratios to the first one."""
    results = report.results
    compare = len(results) > 1
    first = results[0]
    columns = ["artifact", "top-1", "top-5", "agree", "n", "p50 ms", "p90 ms", "p99 ms"]
    columns += ["CV", "img/s", "MB", "load s", "1st ms", "RSS MB"]
    if compare:
        columns += ["p50 x", "MB x"]
    body = []
    for entry in results:
        cold = entry.first_inference_ms > 0
        timed = not entry.proxy_for  # a host proxy's latency says nothing of the device
        acc, lat = entry.accuracy, entry.latency_ms
        row = [
            entry.name,
            f"{acc.top1:.2%}",
            f"{acc.top5:.2%}",
            "-" if acc.agreement is None else f"{acc.agreement:.1%}",
            str(acc.n),
            *(
                [f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']:.2f}"]
                if timed
                else [PROXY] * 3
            ),
            f"{entry.cv:.0%}" if timed else DASH,
            f"{entry.throughput_ips:.0f}" if timed else DASH,
            f"{entry.size_mb:.2f}",
            f"{entry.load_s:.2f}",
            f"{entry.first_inference_ms:.1f}" if cold else DASH,
            f"{entry.peak_rss_mb:.0f}" if entry.peak_rss_mb > 0 else DASH,
        ]
        if compare:
            row += [
                f"{lat['p50'] / first.latency_ms['p50']:.2f}x"
                if timed and not first.proxy_for
                else DASH,
                f"{entry.size_mb / first.size_mb:.2f}x",
            ]
        body.append(row)
    return columns, body


def markdown(report: BenchReport) -> str:
    columns, body = rows(report)
    lines = [f"**edgetl bench** on {report.data} (batch 1, {report.created})", "",
             *md_table(columns, body)]  # fmt: skip
    if ratio_note(report):
        lines.append(f"\n{ratio_note(report)}")
    lines += robustness_lines(report.results)
    for entry in report.results:
        if entry.checks.latency is not None:
            lines.append(f"\n{entry.name} vs baseline: {entry.checks.latency.line}")
        lines += [f"\n{entry.name}: {note}" for note in entry.notes]
    env = report.results[0].env
    lines.append(
        f"\n<sub>{_known(env.get('cpu'))}, {_known(env.get('cpu_count'))} cores, governor "
        f"{_known(env.get('governor'))}, threads {_known(env.get('threads'))}, "
        f"{_known(env.get('os'))}</sub>"
    )
    return "\n".join(lines) + "\n"


def md_table(columns: list[str], body: list[list[str]]) -> list[str]:
    """A Markdown table: the first column left-aligned, the numbers right-aligned."""
    return ["| " + " | ".join(columns) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
            *("| " + " | ".join(row) + " |" for row in body)]  # fmt: skip


def robustness_lines(results: Sequence[BenchResult | DetectBenchEntry]) -> list[str]:
    """The Markdown robustness section: a table over the artifacts and each one's finding."""
    from edgetl.stages.bench.robustness import table

    found = table(results)
    if found is None:
        return []
    lines = ["", "**Robustness** (reference set; same images for every artifact)", "",
             *md_table(*found)]  # fmt: skip
    for entry in results:
        if entry.robustness is not None and entry.robustness.finding:
            lines.append(f"\n{entry.name}: {entry.robustness.finding}")
    return lines


def _known(value: object) -> str:
    """A recorded setting, or a dash where it is unknown (None) or the runtime's default (0)."""
    return DASH if value in (None, 0, "") else str(value)


def write_markdown(report: BenchReport, path: Path) -> None:
    atomic_write_text(path, markdown(report))


def junit(report: BenchReport) -> ET.Element:
    """One test case per artifact and check: loads and runs and (with a baseline) latency
    and accuracy regression. High latency noise is a warning (system-err), not a failure."""
    suite = ET.Element("testsuite", name="edgetl bench")
    failures = 0
    for entry in report.results:
        cases: list[tuple[str, str | None]] = [("runs", None)]
        latency, accuracy = entry.checks.latency, entry.checks.accuracy
        if latency is not None:
            cases.append(("latency regression", latency.line if latency.regressed else None))
        if accuracy is not None:
            message = f"top-1 {accuracy.drop_pts:+.2f} pts below the baseline"
            cases.append(("accuracy regression", message if accuracy.failed else None))
        robust = entry.checks.robustness
        if robust is not None:
            message = f"robustness below the baseline: {robust}"
            cases.append(("robustness regression", message if robust.failed else None))
        for check, failure in cases:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"edgetl.stages.bench.{entry.name}",
                name=check,
                time=f"{sum(entry.samples_ms) / 1000:.3f}",
            )
            if failure is not None:
                failures += 1
                ET.SubElement(case, "failure", message=failure).text = failure
        first = suite[-len(cases)]
        ET.SubElement(first, "system-out").text = (
            f"top-1 {entry.accuracy.top1:.4f} n {entry.accuracy.n} "
            f"p50 {entry.latency_ms['p50']:.4f} ms CV {entry.cv:.1%}"
        )
        if entry.notes:
            ET.SubElement(first, "system-err").text = "\n".join(entry.notes)
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    return suite


def write_junit(report: BenchReport, path: Path) -> None:
    write_xml(path, junit(report))


def write_xml(path: Path, root: ET.Element) -> None:
    """A JUnit (or any) XML tree, indented, written atomically."""
    ET.indent(root)
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))


def pyplot(path: Path) -> Any:
    """matplotlib's pyplot without a display, or an error naming the --plot path and the
    extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EdgetlError(
            f"--plot {path}: needs matplotlib; install it with pip install 'edgetl[plot]'"
        ) from exc
    return plt


def write_plot(report: BenchReport, path: Path) -> None:
    """Accuracy against p50 per artifact, and the latency distributions."""
    plt = pyplot(path)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for entry in report.results:
        left.scatter(entry.latency_ms["p50"], 100 * entry.accuracy.top1, s=60)
        left.annotate(entry.name, (entry.latency_ms["p50"], 100 * entry.accuracy.top1))
    left.set_xlabel("p50 latency (ms, batch 1)")
    left.set_ylabel("top-1 (%)")
    left.set_title(f"accuracy vs latency ({report.results[0].accuracy.n} images)")
    left.grid(alpha=0.3)
    right.boxplot(
        [entry.samples_ms for entry in report.results],
        tick_labels=[entry.name for entry in report.results],
        showfliers=False,
    )
    right.set_ylabel("latency (ms)")
    right.set_title("latency distribution")
    right.grid(alpha=0.3)
    save_png(figure, path)


def save_png(figure: Any, path: Path) -> None:
    """A matplotlib figure as a PNG written atomically, then closed."""
    import io

    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
