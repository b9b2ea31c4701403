"""Tables fit the terminal without cutting a value: at 120 columns artifact names were
`cpu-…`/`open…` and values `98.7…`, and FP32 and INT8 OpenVINO artifacts looked alike."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from rich.console import Console

from edgetl.cli import main
from edgetl.cli.output import print_report
from edgetl.core.records import BenchAccuracy, BenchReport, BenchResult

NAMES = ["cpu-fp32", "openvino-cpu-fp32", "openvino-cpu-int8", "jetson-orin-nano-int8"]


def result(name: str, index: int, cold: bool) -> BenchResult:
    return BenchResult(
        artifact=f"runs/pets/export/{name}", name=name, target=name.rsplit("-", 1)[0],
        backend="openvino", precision=name.rsplit("-", 1)[1],
        accuracy=BenchAccuracy(top1=0.98765 - index / 100, top5=1.0, n=1359, agreement=0.9876),
        latency_ms={"p50": 12.3456 + index, "p90": 14.5, "p99": 19.25, "mean": 12.9,
                    "std": 1.1, "min": 11.0, "max": 30.0},
        samples_ms=[12.0] * 20, iterations=200, warmup=20, batch_size=1,
        throughput_ips=81.0, load_s=0.1234, first_inference_ms=5.5 if cold else 0.0,
        peak_rss_mb=112.0 if cold else 0.0, size_mb=13.58 / (index + 1),
        env={"cpu": "AMD EPYC", "cpu_count": 2, "governor": None, "threads": 0, "os": "Linux"},
        cv=0.34,
    )  # fmt: skip


def render(width: int, cold: bool = True) -> list[str]:
    report = BenchReport(
        "2026-12-02", "reference set (200 test images in the artifact)", ["edgetl", "bench"],
        [result(name, i, cold) for i, name in enumerate(NAMES)],
    )  # fmt: skip
    console = Console(width=width, record=True, highlight=False)
    print_report(console, report)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_bench_table_fits_and_never_cuts(width: int) -> None:
    lines = render(width)
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines)
    assert "…" not in text
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == len(NAMES)
    for line, name in zip(body, NAMES, strict=True):
        assert line.split("│")[1].strip() == name  # whole, one row each
    assert "98.77%" in text and "12.35" in text  # the values that matter most survive
    if width >= 200:
        assert "hidden" not in text and "RSS MB" in text
    else:
        assert "hidden at this width" in text
    assert "ratios to cpu-fp32" in text


def test_unmeasured_cold_start_is_a_dash_not_zero() -> None:
    text = "\n".join(render(220, cold=False))
    row = next(line for line in text.splitlines() if "openvino-cpu-int8" in line)
    cells = [cell.strip() for cell in row.split("│")]
    columns = [c.strip() for c in next(x for x in text.splitlines() if "1st ms" in x).split("┃")]
    assert cells[columns.index("1st ms")] == "-" and cells[columns.index("RSS MB")] == "-"


def test_markdown_prints_dashes_for_unknown_settings() -> None:
    from edgetl.stages.bench.reports import markdown

    report = BenchReport("now", "data", [], [result("cpu-fp32", 0, False)])
    text = markdown(report)
    assert "governor -, threads -" in text and "None" not in text
    assert "| - | - |" in text  # 1st ms and RSS MB


def test_targets_fit_80_columns_and_json_names_aliases() -> None:
    import json

    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["targets"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in result.output
    for name in ("cpu", "jetson-orin-nano", "openvino-npu", "tensorrt-gpu"):
        assert any(line.startswith(f"│ {name} ") for line in lines), name
    rows = json.loads(CliRunner().invoke(main, ["targets", "--json"]).output)
    alias = next(r for r in rows if r["name"] == "jetson")
    assert alias["alias_of"] == "jetson-orin-nano"


def test_piped_output_never_goes_silent_on_a_long_step(monkeypatch) -> None:
    """Piped (CI logs), rich draws its bars only at the end: a 12 s layer ranking, an 11 s
    NNCF statistics pass were silences. Bars and library calls print a line every
    PIPED_EVERY_S seconds there (tools/silences.py measures whole commands)."""
    import io
    import time

    from rich.console import Console

    from edgetl.core import ui
    from edgetl.core.events import reporting

    monkeypatch.setattr(ui, "PIPED_EVERY_S", 0.05)
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with reporting(console), ui.progress() as bar:
        task = bar.add_task("rank layer sensitivity", total=3, info="")
        time.sleep(0.3)  # one slow candidate: no update for a while
        bar.update(task, advance=1, info="conv_stem")
        time.sleep(0.2)
        bar.update(task, advance=2)
    with reporting(console), ui.heartbeat("quantizing"):
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("rank layer sensitivity: 0/3") for line in lines) >= 2
    assert any(line.startswith("rank layer sensitivity: 1/3 conv_stem") for line in lines)
    assert sum(line.startswith("quantizing ... ") for line in lines) >= 2
