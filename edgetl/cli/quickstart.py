"""`edgetl quickstart`: the whole flow on the offline default."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.output import guard_tables, print_quantization, print_report, print_run
from edgetl.core.events import say, section
from edgetl.core.ui import stdout_console
from edgetl.core.verdict import check

if TYPE_CHECKING:
    from edgetl.quantize.guard import GuardReport

# Digits are 8x8 pixels: 224 px adds no detail to them, and 128 px is (128/224)^2 = a third
# of the pixels the backbone would otherwise process.
QUICKSTART_IMAGE_SIZE = 128


@main.command()
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("edgetl-quickstart"), show_default=True
)
@click.option(
    "--task",
    type=click.Choice(["classify", "detect"]),
    default="classify",
    show_default=True,
    help="classify: scikit-learn's digits; detect: objects pasted on scikit-image's photos.",
)
@click.option("--epochs", type=int, default=None, help="[default: 30 classify, 16 detect]")
@click.option("--iterations", type=int, default=200, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing quickstart directory.")
@handle_errors
def quickstart(out: Path, task: str, epochs: int | None, iterations: int, force: bool) -> None:
    """The whole flow offline: digits + efficientnet_lite0 -> finetune -> export cpu FP32 and
    accuracy-guarded INT8 -> bench what was exported.

    The guard keeps INT8 only where val shows it within 1 point of FP32 at 90% confidence;
    when it cannot, the quickstart says what val can show and goes on with FP32."""
    from edgetl.core.outputs import check_replaceable, check_writable
    from edgetl.core.ui import heartbeat

    what = "digits" if task == "classify" else "scenes (detection)"
    say(f"edgetl quickstart into {out}: {what} + efficientnet_lite0, offline")
    with heartbeat("loading PyTorch, NNCF and the runtimes"):
        from edgetl.train.stack import check_host_stack

        check_host_stack()
        import edgetl.stages.bench.harness  # noqa: F401  (the stack, loaded under the heartbeat)
        import edgetl.stages.export.stage  # noqa: F401
        import edgetl.stages.finetune.stage  # noqa: F401

    check_writable(out / "run", "--out")
    # Quickstart replaces only what it wrote itself (out/run, its exports, report.json).
    check_replaceable(out, force, "quickstart directory", None)
    if task == "detect":
        from edgetl.cli.quickstart_detect import detect_flow

        detect_flow(out, epochs, iterations, force)
        return
    run_dir = _finetune(out / "run", epochs or 30, force)
    artifacts = _export(run_dir, force)
    _bench(artifacts, out / "report.json", iterations)


def _finetune(run_dir: Path, epochs: int, force: bool) -> Path:
    from edgetl.stages.finetune import FinetuneOptions, finetune

    section("1/4 finetune")
    say(
        f"digits are 8x8 pixels: using --image-size {QUICKSTART_IMAGE_SIZE} instead of "
        "the backbone's 224 to keep this to a few minutes on a laptop CPU"
    )
    opts = FinetuneOptions(data="digits", out=run_dir, epochs=epochs,
                           image_size=QUICKSTART_IMAGE_SIZE, force=force)  # fmt: skip
    info = finetune(opts)
    assert info is not None  # None only on the other ranks of a torchrun launch
    print_run(info, run_dir)
    return run_dir


def _export(run_dir: Path, force: bool) -> list[Path]:
    """FP32, then INT8 under the guard (its refusal said, not an error); what was written."""
    from edgetl.stages.export import ExportOptions, export

    artifacts = []
    for step, precision in ((2, "fp32"), (3, "int8")):
        guard = " (accuracy guard: at most 1 point below FP32)" if precision == "int8" else ""
        section(f"{step}/4 export --target cpu --precision {precision}{guard}")
        options = ExportOptions(run=run_dir, target="cpu", precision=precision, force=force,
                                qat_rung=False)  # fmt: skip
        result = export(options)
        if result.manifest is None and result.guard is not None:
            say_refused(result.guard, run_dir)  # the guard's answer, not an error
            continue
        check(result)
        if result.manifest is not None:
            print_quantization(result.manifest)
        artifacts.append(result.out)
    return artifacts


def _bench(artifacts: list[Path], report: Path, iterations: int) -> None:
    from edgetl.stages.bench.harness import bench
    from edgetl.stages.bench.options import BenchOptions

    section("4/4 bench on the test split (no choice was made on it)")
    opts = BenchOptions(artifacts=artifacts, data="digits", split="test",
                        iterations=iterations, json_path=report)  # fmt: skip
    outcome = bench(opts)
    print_report(stdout_console(), outcome.report)
    say(f"report: {report}")
    check(outcome)


def say_refused(report: GuardReport, run_dir: Path) -> None:
    """The guard refused every INT8 candidate: show what it measured, why that is the
    promise kept, and the one command that would accept the best candidate's bound."""
    for item in guard_tables(report):
        say(item)
    best = min(report.attempts, key=lambda a: a.drop_upper_pts or math.inf)
    asked = math.ceil((best.drop_upper_pts or 0.0) * 10) / 10
    say(
        f"INT8 refused: no candidate is shown, at {report.confidence:.0%} confidence on "
        f"{report.n} val images, to lose at most {report.budget_pts:g} point; the best "
        f"({best.name}) is shown within {best.drop_upper_pts:.2f}. No INT8 artifact; the "
        "quickstart goes on with FP32. To keep that candidate, ask for what val can show: "
        f"edgetl export {run_dir} --target cpu --precision int8 --max-accuracy-drop {asked:g}"
    )
    command = f"edgetl export {run_dir} --target cpu --precision int8 --qat"
    say("The quickstart skips the guard's last rung, quantization-aware fine-tuning (minutes "
        f"on a CPU): {command} tries it")  # fmt: skip
