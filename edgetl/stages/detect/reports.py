"""Detector bench reports for people and CI systems, here and over the lab: the table every
view shows, Markdown (PR comments), JUnit XML and a PNG plot, as the classifiers' bench writes
(stages/bench/reports.py). Device side: no torch."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from edgetl.core.files import atomic_write_json, atomic_write_text
from edgetl.core.records import LabReport
from edgetl.core.records.detector import DetectBenchEntry, DetectBenchReport
from edgetl.stages.bench.options import BenchOptions
from edgetl.stages.bench.reports import DASH, md_table, robustness_lines, save_png, write_xml

COLUMNS = ["artifact", "precision", "mAP50-95", "mAP50", "agree", "p50 ms", "graph ms",
           "NMS ms (share)", "checks"]  # fmt: skip
LAB_COLUMNS = ["device", "target", "artifact", "mAP50-95", "agree", "p50 ms", "NMS", "status"]
CASES = {"map": "mAP regression", "latency": "latency regression",
         "robustness": "robustness regression"}  # fmt: skip
UNGATED = "emulated: latency not gated"  # the latency check where a p50 gates nothing


def title(report: DetectBenchReport) -> str:
    first = report.results[0]
    return (f"bench on {report.data} ({report.split}: {first.images} images, {first.objects} "
            "objects); batch-1 latency with NMS")  # fmt: skip


def rows(report: DetectBenchReport) -> list[list[str]]:
    return [
        [e.name, e.precision, f"{e.map50_95:.4f}", f"{e.map50:.4f}", agree(e),
         f"{e.latency.p50:.2f}", f"{e.graph_p50_ms:.2f}",
         f"{e.nms_p50_ms:.2f} ({e.nms_share:.0%})" if e.nms_where != "graph" else "in the graph",
         "; ".join(e.checks.values()) or DASH]
        for e in report.results
    ]  # fmt: skip


def agree(entry: DetectBenchEntry) -> str:
    return DASH if entry.agreement is None else f"{entry.agreement:.1%}"


def lab_rows(lab: LabReport) -> list[list[str]]:
    """A row per device and artifact; a device that failed is a row saying why."""
    body = []
    for run in lab.devices:
        if run.detections is None:
            body.append([run.device, run.target, *[DASH] * 5, f"{run.status}: {run.reason}"])
            continue
        for e in run.detections.results:
            # qemu's latency, or a host proxy's, is not a device's: never shown beside one
            p50 = "emulated" if run.emulated else "proxy" if e.proxy_for else f"{e.latency.p50:.2f}"
            status = "; ".join([run.status, *([e.checks["answers"]] if "answers" in e.checks
                                              else [])])  # fmt: skip
            body.append([run.device, run.target, e.name, f"{e.map50_95:.4f}", agree(e), p50,
                         e.nms_where, status])  # fmt: skip
    return body


def lab_entries(lab: LabReport, timed_only: bool = False) -> list[DetectBenchEntry]:
    """Every device's entries, named DEVICE/ARTIFACT; `timed_only`: those whose latency is
    a device's own (not emulated, not a proxy's)."""
    return [
        dataclasses.replace(e, name=f"{run.device}/{e.name}")
        for run in lab.devices
        if run.detections is not None and not (timed_only and run.emulated)
        for e in run.detections.results
        if not (timed_only and e.proxy_for)
    ]


def markdown(report: DetectBenchReport) -> str:
    lines = [f"**edgetl bench** (detectors) {title(report)}", "", *md_table(COLUMNS, rows(report))]
    if any(e.agreement is not None for e in report.results):
        lines.append("\nagree: the share of FP32 PyTorch's detections scoring >= 0.5 that the "
                     "artifact reproduces (same class, IoU >= 0.5)")  # fmt: skip
    lines += robustness_lines(report.results)
    lines += [f"\n{failure}" for failure in report.failures]
    return "\n".join(lines) + "\n"


def lab_markdown(lab: LabReport) -> str:
    lines = [f"**edgetl bench** (detectors, batch 1 with NMS) on the lab {lab.lab} "
             f"({lab.created})", "", *md_table(LAB_COLUMNS, lab_rows(lab))]  # fmt: skip
    lines += [f"\n{run.device}: {run.status}: {run.reason}" for run in lab.devices
              if run.status != "ok" and run.detections is not None]  # fmt: skip
    return "\n".join([*lines, *robustness_lines(lab_entries(lab))]) + "\n"


def junit(report: DetectBenchReport, suite_name: str = "edgetl bench") -> ET.Element:
    """A test case per artifact and check: it runs, and (with a baseline) mAP, latency and
    robustness regression, each failed where the gate failed it."""
    suite = ET.Element("testsuite", name=suite_name)
    for entry in report.results:
        gated = [key for key in CASES
                 if key in entry.checks and entry.checks[key] != UNGATED]  # fmt: skip
        for name, key in [("runs", None), *((CASES[key], key) for key in gated)]:
            case = ET.SubElement(suite, "testcase", classname=f"edgetl.detect.{entry.name}",
                                 name=name)  # fmt: skip
            if key is None:
                ET.SubElement(case, "system-out").text = (
                    f"mAP50-95 {entry.map50_95:.4f} mAP50 {entry.map50:.4f} n {entry.images} "
                    f"p50 {entry.latency.p50:.4f} ms NMS {entry.nms_where}"
                )
            elif key in entry.failed:
                message = f"{entry.name}: {CASES[key]}: {entry.checks[key]}"
                ET.SubElement(case, "failure", message=message).text = message
    _count(suite)
    return suite


def lab_junit(lab: LabReport) -> ET.Element:
    """A testsuite per device: the bench's cases, or one failed case saying why it failed."""
    root = ET.Element("testsuites", name="edgetl lab")
    for run in lab.devices:
        name = f"edgetl bench on {run.device}"
        suite = ET.Element("testsuite", name=name)
        if run.detections is not None:
            suite = junit(run.detections, name)
            for case in suite:
                case.set("classname", f"{run.device}.{case.get('classname')}")
        if run.status == "failed":  # the device failed (not a regression: those are cases)
            case = ET.SubElement(suite, "testcase", classname=run.device, name="device")
            ET.SubElement(case, "failure", message=run.reason).text = run.reason
            _count(suite)
        root.append(suite)
    return root


def _count(suite: ET.Element) -> None:
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(sum(case.find("failure") is not None for case in suite)))


def write_plot(entries: list[DetectBenchEntry], timed: list[DetectBenchEntry], path: Path,
               heading: str) -> None:  # fmt: skip
    """mAP50-95 per artifact, and the p50 of those `timed` on their device (not emulated,
    not a proxy's) split into the graph and NMS."""
    from edgetl.stages.bench.reports import pyplot

    plt = pyplot(path)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.barh([e.name for e in entries], [100 * e.map50_95 for e in entries], color="tab:blue")
    left.set_xlabel("mAP50-95 (%)")
    left.set_title(heading)
    left.grid(alpha=0.3, axis="x")
    _latency_panel(right, timed)
    save_png(figure, path)


def _latency_panel(axes: Any, timed: list[DetectBenchEntry]) -> None:
    if not timed:
        axes.text(0.5, 0.5, "no device latency (emulated or proxy)", ha="center")
        axes.set_axis_off()
        return
    names = [e.name for e in timed]
    graph = [e.graph_p50_ms for e in timed]
    nms = [e.nms_p50_ms if e.nms_where != "graph" else 0.0 for e in timed]
    axes.barh(names, graph, label="graph", color="tab:gray")
    axes.barh(names, nms, left=graph, label="NMS after the graph", color="tab:orange")
    axes.set_xlabel("p50 ms (batch 1)")
    axes.set_title("latency: graph + NMS")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3, axis="x")


def write(report: DetectBenchReport, opts: BenchOptions) -> None:
    """--json, --md, --junit and --plot, each written whole (atomically)."""
    if opts.json_path is not None:
        atomic_write_json(opts.json_path, report.to_dict())
    if opts.md_path is not None:
        atomic_write_text(opts.md_path, markdown(report))
    if opts.junit_path is not None:
        write_xml(opts.junit_path, junit(report))
    if opts.plot_path is not None:
        timed = [e for e in report.results if not e.proxy_for]
        heading = f"mAP50-95: {report.split} of {Path(report.data).name}"
        write_plot(report.results, timed, opts.plot_path, heading)


def write_lab(lab: LabReport, opts: BenchOptions) -> None:
    if opts.json_path is not None:
        lab.write(opts.json_path)
    if opts.md_path is not None:
        atomic_write_text(opts.md_path, lab_markdown(lab))
    if opts.junit_path is not None:
        write_xml(opts.junit_path, lab_junit(lab))
    if opts.plot_path is not None:
        write_plot(lab_entries(lab), lab_entries(lab, timed_only=True), opts.plot_path,
                   f"mAP50-95 on the lab {Path(lab.lab).name}")  # fmt: skip
