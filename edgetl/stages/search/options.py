"""What `search` is asked, declared once (core/options.py): the command-line options, their
defaults and help. Imports nothing heavy: the command line reads it before PyTorch loads.
(--max-latency MS|Nx is the command line's: it fills max_latency_ms or max_latency_x.)"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.core.constants import DEFAULT_BACKBONE, INT8_PAYS_OFF_RATIO
from edgetl.core.errors import EdgetlError
from edgetl.core.measures.evidence import DEFAULT_BUDGET_PTS
from edgetl.core.options import joined, names, numbers, option
from edgetl.core.outputs import check_not_input, check_writable

if TYPE_CHECKING:
    from edgetl.train.loop import HeadTraining


def _numbers(text: str) -> list[int]:
    return list(dict.fromkeys(numbers(text)))


def _names(text: str) -> list[str]:
    return list(dict.fromkeys(names(text)))


@dataclass
class SearchOptions:
    data: str = option(help="ImageFolder directory, 'digits', or a YOLO/COCO folder (detectors).")
    target: str = option(help="Target profile (see `edgetl targets`).")
    out: Path = option(help="Search folder.")
    max_latency_ms: float | None = None  # the budget in ms, or None with max_latency_x
    reference: Path | None = option(
        None,
        "An artifact for --target (e.g. the model shipped now), timed with the candidates: "
        "the budget for --max-latency Nx, and a row in the table.",
    )
    latency: str = option("p50", choices=("p50", "p90"))
    max_size_mb: float | None = option(None, "Model size in MB.", flag="--max-size")
    backbones: list[str] = option(factory=lambda: [DEFAULT_BACKBONE], parse=_names, unparse=joined)
    sizes: list[int] = option(
        factory=lambda: [96, 128, 160, 192, 224], parse=_numbers, unparse=joined
    )
    heads: list[str] = option(
        factory=lambda: ["linear"], help="linear, mlpN (e.g. mlp256).", parse=_names, unparse=joined
    )
    # None: every precision the target supports
    precisions: list[str] | None = option(
        None, "e.g. fp32,int8 [default: the target's].", parse=_names, unparse=joined
    )
    unfreeze: list[int] = option(
        factory=lambda: [0],
        help="Backbone stages fine-tuned, per candidate: e.g. 0,1,2 (K > 0: real fine-tuning "
        "runs, only for candidates within the latency budget).",
        parse=_numbers,
        unparse=joined,
    )
    weights: Path | None = option(None, "A local backbone checkpoint (with a single --backbones).")
    budget_minutes: float | None = option(
        None, "Stop cleanly after this long with the best so far."
    )
    epochs: int = option(30)
    seed: int = option(0)
    # Latency samples per architecture: +-2% between twins, ~1 s each.
    iterations: int = option(500, "Latency samples per architecture (in rounds of 20).")
    max_accuracy_drop: float = option(
        DEFAULT_BUDGET_PTS, "INT8 candidates: the guard's budget in val top-1 points."
    )
    int8_payoff: float = option(
        INT8_PAYS_OFF_RATIO,
        "INT8 candidates slower than this multiple of their FP32 twin's latency (timed in "
        "the same rounds) are dropped: INT8 must pay off.",
        flag="--int8-payoff",
    )
    cache_dir: Path | None = option(None, "Feature cache directory (as finetune's).")
    on: str | None = option(
        None, "Time the architectures on this lab device (see `edgetl devices`)."
    )
    lab: Path | None = None  # the lab file (the command line's --lab)
    force: bool = option(False, "Start again instead of resuming search.json.")
    max_latency_x: float | None = None  # the budget as a multiple of the reference's latency
    lr: float = 1e-3
    batch_size: int = 64
    patience: int = 5
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    workers: int | None = None

    def head_training(self) -> HeadTraining:
        from edgetl.train.loop import HeadTraining

        return HeadTraining(self.epochs, self.lr, self.batch_size, self.seed, self.patience)

    def settings(self) -> dict[str, Any]:
        """What a resumed search must have been asked the same."""
        keep = ("data", "target", "max_latency_ms", "latency", "max_size_mb", "backbones",
                "sizes", "heads", "precisions", "epochs", "lr", "batch_size", "seed",
                "patience", "val_fraction", "test_fraction", "max_accuracy_drop", "on",
                "unfreeze", "max_latency_x", "int8_payoff")  # fmt: skip
        found = {key: value for key, value in asdict(self).items() if key in keep}
        found["weights"] = str(self.weights) if self.weights else None
        found["reference"] = str(self.reference) if self.reference else None
        return found


def check_options(opts: SearchOptions) -> None:
    """Exit 2 naming the option at fault, before any work."""
    if (opts.max_latency_ms is None) == (opts.max_latency_x is None):
        raise EdgetlError("--max-latency: give one budget, in ms (5) or relative to "
                          "--reference (1.2x)")  # fmt: skip
    budget = opts.max_latency_x or opts.max_latency_ms or 0.0
    if not budget > 0:
        raise EdgetlError(f"--max-latency {budget}: give a budget above 0")
    if opts.max_latency_x is not None and opts.reference is None:
        raise EdgetlError(f"--max-latency {opts.max_latency_x:g}x: a relative budget needs "
                          "--reference ARTIFACT (the model it is relative to)")  # fmt: skip
    if not opts.int8_payoff > 0:
        raise EdgetlError(f"--int8-payoff {opts.int8_payoff}: give a ratio above 0 (e.g. 0.9)")
    if opts.latency not in ("p50", "p90"):
        raise EdgetlError(f"--latency {opts.latency}: choose p50 or p90")
    if opts.weights is not None and len(opts.backbones) != 1:
        raise EdgetlError("--weights: give a single --backbones with a local checkpoint")
    if opts.budget_minutes is not None and opts.budget_minutes < 0:
        raise EdgetlError(f"--budget-minutes {opts.budget_minutes}: give minutes >= 0")
    check_writable(opts.out, "--out")
    data = None if opts.data == "digits" else Path(opts.data)
    check_not_input(opts.out, {"--data": data, "--weights": opts.weights,
                               "--reference": opts.reference})  # fmt: skip
