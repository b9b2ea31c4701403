"""`edgetl quickstart --task detect`: the detection flow offline, on a set made from the photos
scikit-image ships (core/data/scenes.py): finetune a detector head on the frozen pyramid,
export cpu FP32 and INT8 under the mAP guard, bench both on the test split."""

from __future__ import annotations

from pathlib import Path

from edgetl.cli.detect_output import print_detect_bench, print_detect_export, print_detect_run
from edgetl.core.events import say, section
from edgetl.core.verdict import check

# 16 epochs of one cycle: the quickstart took 373 s cold on 2 cores (test mAP50-95 0.763,
# best val epoch 15) where 24 took 618 s (0.742, best epoch 14): the cycle's annealing, not
# its length, brings the last points.
DETECT_EPOCHS = 16


def detect_flow(out: Path, epochs: int | None, iterations: int, force: bool) -> None:
    data = _scenes(out / "data")
    run_dir = out / "run"
    from edgetl.stages.finetune import FinetuneOptions, finetune

    section("1/4 finetune --task detect")
    opts = FinetuneOptions(data=str(data), out=run_dir, task="detect",
                           epochs=epochs or DETECT_EPOCHS, force=force)  # fmt: skip
    info = finetune(opts)
    print_detect_run(info, run_dir)  # type: ignore[arg-type]
    artifacts = _export(run_dir, force)
    from edgetl.stages.bench.options import BenchOptions
    from edgetl.stages.detect.measure import bench_detectors

    section("4/4 bench on the test split (no choice was made on it)")
    report = bench_detectors(BenchOptions(artifacts=artifacts, iterations=iterations,
                                          json_path=out / "report.json"))  # fmt: skip
    print_detect_bench(report)
    say(f"report: {out / 'report.json'}")
    check(report)


def _scenes(folder: Path) -> Path:
    """The offline set, made once (seeded: the same bytes each time)."""
    from edgetl.core.data.scenes import make_scenes

    if (folder / "data.yaml").is_file():
        say(f"data: {folder} (made earlier)")
        return folder
    say(f"data: making the offline detection set in {folder} from scikit-image's photos")
    return make_scenes(folder)


def _export(run_dir: Path, force: bool) -> list[Path]:
    from edgetl.stages.export import ExportOptions, export

    artifacts = []
    for step, precision in ((2, "fp32"), (3, "int8")):
        guard = " (mAP guard: at most 1 point below FP32)" if precision == "int8" else ""
        section(f"{step}/4 export --target cpu --precision {precision}{guard}")
        result = export(ExportOptions(run=run_dir, target="cpu", precision=precision, force=force))
        print_detect_export(result)
        if result.manifest is None and precision == "int8":
            say("INT8 refused by the guard: no INT8 artifact; the quickstart goes on with FP32")
            continue
        check(result)
        artifacts.append(result.out)
    return artifacts
