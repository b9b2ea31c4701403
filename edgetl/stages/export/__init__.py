"""The export stage: run -> ONNX -> (INT8) -> backend artifact, verified, with a manifest.

Every artifact stands alone: model files, manifest.json and a reference set (test images
after resize/crop, labels, FP32 logits), so it can be checked and benchmarked on a device
that has neither the dataset nor the run directory.

    options.py  what export is asked (light: the command line reads it first)
    plan.py     resolve the plan: target (alias), precision, recipe, where it runs here
    inputs.py   the images, decoded once, and PyTorch's logits on them
    steps.py    ONNX -> quantize -> compile -> verify, each a frozen record
    package.py  manifest, reference set, signature
    stage.py    the pipeline, staged and written whole

This package's own import is light; export() and archive() load the pipeline when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.stages.export.options import ExportOptions

if TYPE_CHECKING:
    from edgetl.core.data.splits import Splits
    from edgetl.stages.export.stage import ExportResult

__all__ = ["ExportOptions", "archive", "export"]


def export(opts: ExportOptions, scanned: Splits | None = None) -> ExportResult:
    """stage.export: the run exported for one target (see there)."""
    from edgetl.stages.export.stage import export as run

    return run(opts, scanned)


def archive(directory: Path) -> Path:
    """stage.archive: DIR.tar.gz beside the directory, written atomically."""
    from edgetl.stages.export.archiving import archive as write

    return write(directory)
