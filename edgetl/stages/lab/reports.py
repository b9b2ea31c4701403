"""The lab's one table (a row per device and artifact, a failed device as a row saying why)
and its Markdown, JUnit and plot, built on the bench's own writers over all devices."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

from edgetl.core.files import atomic_write_text
from edgetl.core.records import BenchReport, BenchResult, DeviceRun, LabReport
from edgetl.stages.bench import reports as bench_reports

DASH = bench_reports.DASH
COLUMNS = [
    "device", "target", "runtime", "precision", "top-1", "agree", "p50 ms", "p90 ms", "p99 ms",
    "cold s", "RSS MB", "layers", "status",
]  # fmt: skip


def rows(lab: LabReport) -> list[list[str]]:
    body = []
    for run in lab.devices:
        if run.report is None:
            body.append([run.device, run.target, *[DASH] * 10, f"{run.status}: {run.reason}"])
            continue
        for entry in run.report.results:
            body.append(_row(run, entry))
    return body


EMULATED = "emulated"  # latency under qemu: measured, never shown beside a device's


def _row(run: DeviceRun, entry: BenchResult) -> list[str]:
    device, target, layers, status = run.device, run.target, run.layers, str(run.status)
    timed = not entry.proxy_for and not run.emulated
    lat, acc = entry.latency_ms, entry.accuracy
    version = entry.env.get("runtimes", {}).get(entry.backend, "")
    runtime = f"{entry.backend} {version}".strip()
    if entry.proxy_for:
        runtime += f" (proxy for {entry.proxy_for})"
    hidden = EMULATED if run.emulated else bench_reports.PROXY
    check = entry.checks.accuracy
    if check is not None and check.same_answers is not None:
        status += f"; {check.same_answers:.1%} answers as the baseline's ({check.differing} not)"
    cold = entry.load_s + entry.first_inference_ms / 1000 if entry.first_inference_ms else None
    return [
        device,
        target,
        runtime,
        entry.precision,
        f"{acc.top1:.2%}",
        DASH if acc.agreement is None else f"{acc.agreement:.1%}",
        *([f"{lat[q]:.2f}" for q in ("p50", "p90", "p99")] if timed else [hidden] * 3),
        DASH if cold is None or run.emulated else f"{cold:.2f}",
        f"{entry.peak_rss_mb:.0f}" if entry.peak_rss_mb > 0 else DASH,
        _layers(layers.get(entry.artifact.rstrip("/").rsplit("/", 1)[-1])),
        status,
    ]


def _layers(record: object) -> str:
    if not isinstance(record, dict):
        return "CPU"
    dla, gpu = record.get("dla_layers") or 0, record.get("gpu_layers") or 0
    return f"DLA {dla} / GPU {gpu}" if dla else f"GPU {gpu}"


def merged(lab: LabReport) -> BenchReport | None:
    """Every device's results in one bench report, named DEVICE/ARTIFACT (for the plot)."""
    results = [
        dataclasses.replace(entry, name=f"{run.device}/{entry.name}")
        for run in lab.devices
        if run.report is not None
        for entry in run.report.results
    ]
    if not results:
        return None
    data = "; ".join(sorted({run.report.data for run in lab.devices if run.report}))
    return BenchReport(lab.created, data, lab.command, results)


def markdown(lab: LabReport) -> str:
    lines = [
        f"**edgetl bench** on the lab {lab.lab} ({lab.created})",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * (len(COLUMNS) - 5) + ["---"]) + "|",
        *("| " + " | ".join(row) + " |" for row in rows(lab)),
    ]
    if (every := merged(lab)) is not None:  # DEVICE/ARTIFACT beside each other
        lines += bench_reports.robustness_lines(every.results)
    return "\n".join(lines) + "\n"


def junit(lab: LabReport) -> ET.Element:
    """A testsuite per device: the bench's cases, or one failed case saying why it failed."""
    root = ET.Element("testsuites", name="edgetl lab")
    for run in lab.devices:
        if run.report is not None:
            suite = bench_reports.junit(run.report)
            suite.set("name", f"edgetl bench on {run.device}")
            for case in suite:
                case.set("classname", f"{run.device}.{case.get('classname')}")
        else:
            suite = ET.Element("testsuite", name=f"edgetl bench on {run.device}")
            case = ET.SubElement(suite, "testcase", classname=run.device, name="runs")
            ET.SubElement(case, "failure", message=run.reason).text = run.reason
            suite.set("tests", "1")
            suite.set("failures", "1")
        root.append(suite)
    return root


def write(lab: LabReport, json_path: Path | None, md: Path | None, junit_path: Path | None,
          plot: Path | None) -> None:  # fmt: skip
    if json_path:
        lab.write(json_path)
    if md:
        atomic_write_text(md, markdown(lab))
    if junit_path:
        bench_reports.write_xml(junit_path, junit(lab))
    if plot and (report := merged(lab)) is not None:
        bench_reports.write_plot(report, plot)
