"""The export pipeline: plan -> inputs -> ONNX -> (INT8) -> compile -> verify -> package, staged
and written whole, or nothing written."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.core.data.splits import Splits
from edgetl.core.errors import CheckFailed
from edgetl.core.events import say
from edgetl.core.files import staged_dir
from edgetl.core.outputs import claim, clean_scratch, scratch_dir
from edgetl.core.records import MANIFEST_FILE, Manifest
from edgetl.core.verdict import check
from edgetl.quantize.guard import GuardFailed, GuardReport
from edgetl.stages.export.archiving import check_archive, manifest_of, replace_archive
from edgetl.stages.export.inputs import load_inputs
from edgetl.stages.export.options import ExportOptions
from edgetl.stages.export.package import package
from edgetl.stages.export.plan import Plan, resolve_plan
from edgetl.stages.export.steps import compile_artifact, quantize, to_onnx, verify


@dataclass(frozen=True)
class ExportResult:
    """The artifact's manifest, or (nothing written) the checks that failed; `guard` is the
    INT8 guard's report, also when no candidate met the budget."""

    out: Path
    manifest: Manifest | None
    failures: list[str] = field(default_factory=list)
    guard: GuardReport | None = None

    @property
    def passed(self) -> bool:
        return self.manifest is not None and not self.failures

    def checked(self) -> Manifest:
        """The manifest; CheckFailed naming the failures when the export did not pass."""
        check(self)
        assert self.manifest is not None
        return self.manifest

    def to_dict(self) -> dict[str, Any]:
        """The manifest when it passed; else the verdict and what the guard tried."""
        if self.manifest is not None and self.passed:
            return self.manifest.to_dict()
        guard = None if self.guard is None else self.guard.to_dict()
        return {"passed": False, "out": str(self.out), "failures": self.failures, "guard": guard}


def export(opts: ExportOptions, scanned: Splits | None = None) -> Any:
    """Export the run for one target: the plan resolved from the options (exit 2 naming the
    one at fault, before any work), then export_plan; a detection run's export is
    stages/detect/export.py's (a DetectExportResult)."""
    from edgetl.stages.detect.run import is_detect_run

    if is_detect_run(opts.run):
        from edgetl.stages.detect.export import export_detector

        return export_detector(opts)
    return export_plan(resolve_plan(opts), scanned)


def export_plan(plan: Plan, scanned: Splits | None = None) -> ExportResult:
    """The planned export. A failed check (parity, the accuracy budget, a runtime's rules) is
    a result that did not pass, with nothing written. `scanned`: the run's data when the
    caller holds it (not scanned again)."""
    opts = plan.opts
    notes: list[str] = []
    with claim(plan.out, opts.force, "export", MANIFEST_FILE, notes):
        _print_cleanup(notes)
        replaced = manifest_of(plan.out)
        check_archive(plan.out, opts.archive, opts.force, replaced)
        inputs = load_inputs(plan, scanned)
        try:
            with (
                staged_dir(plan.out, opts.force, "export", MANIFEST_FILE) as out_dir,
                scratch_dir(plan.out) as scratch,
            ):
                started = time.perf_counter()
                graph = to_onnx(plan, inputs, Path(scratch))
                graph = quantize(plan, inputs, graph, Path(scratch))
                compiled = compile_artifact(plan, inputs, graph, out_dir, started)
                verified = verify(plan, inputs, graph, compiled, out_dir)
                manifest = package(plan, inputs, graph, compiled, verified, out_dir)
        except GuardFailed as failed:  # the staged directory is gone: nothing written
            return ExportResult(plan.out, None, [str(failed)], failed.report)
        except CheckFailed as failed:
            return ExportResult(plan.out, None, [str(failed)])
        _report(manifest, plan.out)
        replace_archive(plan.out, opts.archive, replaced)
    guard = graph.quantized.guard.report if graph.quantized is not None else None
    return ExportResult(plan.out, manifest, [], guard)


def _print_cleanup(notes: list[str]) -> None:
    """What claim() and the scratch cleanup removed, left by exports that were killed."""
    notes += [
        f"removed {path}, left by an export that was killed" for path in clean_scratch("export")
    ]
    for note in notes:
        say(note)


def _report(manifest: Manifest, out: Path) -> None:
    test = manifest.accuracy.test
    say(
        f"test top-1 ({test.n} images no choice was made on): artifact "
        f"{test.top1:.2%}, FP32 PyTorch {test.fp32_top1:.2%}"
    )
    say(f"artifact: {out}")
