"""What `export` is asked, declared once (core/options.py): the command-line options, their
defaults and help. Imports nothing heavy: the command line reads it before PyTorch loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetl.core.measures.evidence import DEFAULT_BUDGET_PTS, DEFAULT_RULE, RULES
from edgetl.core.options import option

DEFAULT_PARITY_SAMPLES = 200

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportOptions:
    run: Path
    target: str = option(help="Target profile name (see `edgetl targets`) or .toml.")
    precision: str | None = option(None, "Default: the target's.", choices=PRECISIONS)
    out: Path | None = option(None, "Artifact directory [default: RUN/export/TARGET-PRECISION].")
    dynamic_batch: bool = option(False, "Export with a dynamic batch dimension.")
    parity_samples: int = option(
        DEFAULT_PARITY_SAMPLES, "Validation images used for the parity check."
    )
    reference_samples: int = option(
        200, "Test images stored in the artifact (reference set) for `edgetl bench ARTIFACT`."
    )
    # INT8 only
    recipe: str | None = option(
        None,
        "INT8: calibration recipe name (calibration/*.toml) or .toml file [default: the target's].",
    )
    calib_data: Path | None = option(
        None,
        "INT8: directory of calibration images (flat or class folders) or a .npy of "
        "preprocessed tensors [default: a stratified sample of the run's training split].",
    )
    calib_samples: int | None = option(
        None, "INT8: number of calibration images [default: the recipe's]."
    )
    max_accuracy_drop: float = option(
        DEFAULT_BUDGET_PTS,
        "INT8: most top-1 points the INT8 model may lose against FP32, shown on validation "
        "at --confidence.",
    )
    confidence: float | None = option(
        None,
        "INT8: confidence of the guard's upper bound on the drop; a candidate is kept only "
        "when that bound is within --max-accuracy-drop [default: 0.9].",
    )
    rule: str = option(
        DEFAULT_RULE,
        "INT8: how the guard decides. paired-bound: val's exact bound on the drop; "
        "paired-bound+flips: also the flips against FP32 on unlabelled training images "
        "(stricter; docs/guard.md).",
        choices=tuple(RULES),
    )
    sensitivity: bool = option(
        False,
        "INT8: rank every quantized layer (val metric with it alone float) for the artifact's "
        "sensitivity.json even where the guard stopped before ranking (`edgetl inspect`).",
    )
    qat: bool = option(
        False,
        "INT8: quantization-aware fine-tuning right after plain INT8 (before any float "
        "layer); without it QAT is the guard's last rung. Judged by the guard's rule.",
    )
    archive: bool = option(False, "Also write ARTIFACT.tar.gz (e.g. a bundle to copy to a device).")
    sign: Path | None = option(
        None,
        "Sign the artifact with this ed25519 private key (see `edgetl keygen`); devices "
        "check it with --trust.",
    )
    force: bool = option(False, "Replace an existing artifact directory.")
    # QAT as the guard's last rung; the quickstart turns it off: minutes on a 2-core CPU for
    # a rung its 359 val images cannot certify at 1 point (digits: QAT's bound was 3.42).
    qat_rung: bool = True
