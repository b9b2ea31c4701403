"""What the command line prints for people: run and guard tables, predictions, JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgetl.core.measures.evidence import DEFAULT_CONFIDENCE, PairedDrop, promise_note
from edgetl.core.ui import fitted_table, image_count, stdout_console, table

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from edgetl.core.records import Attempt, BenchReport, BenchResult, Manifest, RunInfo
    from edgetl.core.records.detector import DetectBenchEntry
    from edgetl.quantize.guard import GuardReport


def print_run(info: RunInfo, out: Path) -> None:
    metrics = info.metrics
    sizes = info.data.sizes
    stdout_console().print(
        table(
            f"finetune {out}",
            ["metric", "value"],
            [
                ["backbone", info.backbone.name],
                ["classes", len(info.classes)],
                ["images", f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test"],
                ["train top-1", f"{metrics.train_top1:.2%}"],
                ["val top-1 (early stopping chose on it)", f"{metrics.val_top1:.2%}"],
                ["val loss", f"{metrics.val_loss:.4f}"],
                ["test top-1 (reported only)", f"{metrics.test_top1:.2%}"],
                ["best epoch", f"{metrics.best_epoch} of {metrics.epochs_run}"],
                ["feature cache", metrics.feature_cache],
                ["time", f"{metrics.time_s:.1f} s"],
            ],
        )
    )


def attempts_table(title: str, attempts: list[Attempt], n: int) -> Table:
    """Each INT8 candidate the guard judged: its val drop, the evidence, the verdict."""
    confidence = next((a.confidence for a in attempts if a.confidence), DEFAULT_CONFIDENCE)
    rows = [
        [
            a.name,
            f"{a.top1:.2%}",
            f"{a.drop_pts:+.2f} ({image_count(a.drop_pts, n)})",
            "-" if a.worse is None else f"{a.worse}/{a.better}",
            "-" if a.drop_upper_pts is None else f"<= {a.drop_upper_pts:.2f}",
            "-" if a.flips is None else f"{a.flips}/{a.unlabelled} (<= {a.flip_upper_pts:.2f})",
            a.verdict or "-",
        ]
        for a in attempts
    ]
    headers = [
        "attempt",
        "INT8 top-1 (val)",
        "drop pts (images)",
        "worse/better",
        f"bound ({confidence:.0%})",
        "flips/unlabelled (bound)",
        "verdict",
    ]
    return table(title, headers, rows)


def _test_table(manifest: Manifest, kept: str) -> Any:
    """FP32 and the kept INT8 model on test (reported, never chosen on)."""
    assert manifest.quantization is not None
    test = manifest.accuracy.test  # the one measurement on test (manifest/4)
    legacy = manifest.quantization.test  # manifest/3 kept it here as well
    drop = test.drop_pts if test.drop_pts is not None else (legacy.drop_pts if legacy else 0.0)
    agreement = test.agreement if test.agreement is not None else (
        legacy.agreement if legacy else float("nan")
    )  # fmt: skip
    return table(
        f"reported on {test.n} test images (no choice made on them), "
        f"{manifest.accuracy.measured_on}",
        ["model", "top-1 (test)", "drop pts (test)", "agreement"],
        [
            ["FP32", f"{test.fp32_top1:.2%}", "", ""],
            [f"INT8 ({kept})", f"{test.top1:.2%}", f"{drop:+.2f}", f"{agreement:.2%}"],
        ],
    )


def print_quantization(manifest: Manifest) -> None:
    quant = manifest.quantization
    if quant is None:
        return
    n = quant.n
    confidence = quant.confidence or (quant.attempts[-1].confidence if quant.attempts else None)
    rule = f"rule {quant.rule}, " if quant.rule else ""
    console = stdout_console()
    console.print(
        attempts_table(
            f"INT8 accuracy guard: decided on {n} val images (FP32 top-1 {quant.fp32_top1:.2%}, "
            f"{rule}budget {quant.budget_pts:.2f} pts)",
            quant.attempts,
            n,
        )
    )
    kept = quant.attempts[-1].name if quant.attempts else "INT8"
    test = manifest.accuracy.test  # the one measurement on test (manifest/4)
    console.print(_test_table(manifest, kept))
    if test.worse is not None and test.better is not None:
        chosen = quant.attempts[-1] if quant.attempts else None
        text, _ = promise_note(
            PairedDrop(test.n, test.worse, test.better),
            quant.budget_pts,
            chosen.drop_upper_pts if chosen else None,
            confidence or DEFAULT_CONFIDENCE,
        )
        console.print(text)
    floats = ", ".join(quant.float_layers) or "none"
    speed = quant.speed_here
    console.print(
        f"kept: {kept}; float layers: {floats}; recipe {quant.recipe.name}; "
        f"{quant.calibration['count']} calibration images; quantize "
        f"{quant.quantize_s:.1f} s, guard {quant.guard_s:.1f} s; " + _speed(speed, manifest.backend)
    )


def _speed(speed: dict[str, Any], backend: str) -> str:
    if not speed:
        return f"speed is measured on the device ({backend})"
    if "pays_off" not in speed:  # a manifest from before the verdict
        return f"INT8 p50 here {speed['ratio']:.2f}x FP32"
    from edgetl.quantize.int8 import payoff_line

    return payoff_line(speed)


def print_predictions(results: list[dict[str, Any]]) -> None:
    rows = [
        [
            r["image"],
            "  ".join(f"{p['label']} {p['probability']:.1%}" for p in r["predictions"]),
        ]
        for r in results
    ]
    stdout_console().print(table("predictions", ["image", "top classes"], rows))


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        human()


def guard_tables(report: GuardReport) -> list[Table]:
    """What the guard tried when no attempt met the budget, and the layers it ranked."""
    attempts = attempts_table("INT8 attempts", report.attempts, report.n)
    sensitivity = table(
        "most sensitive layers (logit error removed by keeping the layer float)",
        ["layer", "score"],
        [(r.layer, f"{r.score:.3g}") for r in report.ranked(15)],
    )
    return [attempts, sensitivity]


def print_report(console: Console, report: BenchReport) -> None:
    """One row per artifact; with several, p50 and size also as ratios to the first one."""
    from edgetl.stages.bench.reports import PRIORITY, ratio_note, rows

    columns, body = rows(report)
    title = f"edgetl bench on {report.data} (batch 1)"
    console.print(
        fitted_table(title, columns, body, console.width, PRIORITY, None, ratio_note(report))
    )
    print_robustness(console, report.results)
    for entry in report.results:
        for note in entry.notes:
            console.print(f"{entry.name}: {note}")
        if entry.checks.latency is not None:
            console.print(f"{entry.name} vs baseline: {entry.checks.latency.line}")
        if entry.checks.robustness is not None and entry.checks.robustness.failed:
            console.print(f"{entry.name} vs baseline: robustness regressed")


def print_robustness(console: Console, results: Sequence[BenchResult | DetectBenchEntry]) -> None:
    """bench --robustness: the artifacts side by side, then each one's finding in words."""
    from edgetl.stages.bench.robustness import table as robustness_table

    found = robustness_table(results)
    if found is None:
        return
    console.print(table("robustness on the reference set (the same images for every artifact)",
                        *found))  # fmt: skip
    for entry in results:
        if entry.robustness is not None and entry.robustness.finding:
            console.print(f"{entry.name}: {entry.robustness.finding}")


def print_search(console: Console, result: object) -> None:
    """One row a candidate (test marked "not chosen on"), then the stop or the choice."""
    from edgetl.stages.search.state import SearchState, Status

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
