"""`--unfreeze auto`: how much of the backbone to fine-tune, measured on the user's val split.

The linear probe (K=0) on cached features, then the last 1, then 2 stages unfrozen, each
warm-started from the one before and scored on val; the smallest K whose val top-1 is within
the tolerance of the best is kept (fine-tuning more costs time at every re-train and risks
overfitting a small set for nothing). A large gain from unfreezing says the frozen
ImageNet features do not fit this data: a domain gap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DOMAIN_GAP_PT = 3.0  # a gain from unfreezing above this many points is called a domain gap


@dataclass(frozen=True)
class DepthTrial:
    stages: int  # K: backbone stages trained (0: the linear probe on frozen features)
    val_top1: float
    val_loss: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_depth(trials: list[DepthTrial], tolerance_pt: float) -> DepthTrial:
    """The smallest K whose val top-1 is within `tolerance_pt` points of the best."""
    best = max(trial.val_top1 for trial in trials)
    near = [t for t in trials if (best - t.val_top1) * 100 <= tolerance_pt + 1e-9]
    return min(near, key=lambda trial: trial.stages)


def in_words(trials: list[DepthTrial], chosen: DepthTrial, tolerance_pt: float) -> str:
    """What was found, for people: enough as frozen, or how much fine-tuning gained."""
    probe = next(t for t in trials if t.stages == 0)
    gain = (chosen.val_top1 - probe.val_top1) * 100
    best = max(trials, key=lambda trial: trial.val_top1)
    if chosen.stages == 0:
        more = (best.val_top1 - probe.val_top1) * 100
        return (
            f"the frozen features are enough: unfreezing gained {more:+.1f} pts on val at most "
            f"(within the {tolerance_pt:g} pt tolerance), so K=0 is kept"
        )
    stages = "stage" if chosen.stages == 1 else "stages"
    if gain > DOMAIN_GAP_PT:
        return (
            f"your data differs from ImageNet: fine-tuning {chosen.stages} {stages} gained "
            f"{gain:.1f} pts on val over the frozen features (a domain gap: the pretrained "
            "features do not fit it as they are)"
        )
    return (
        f"fine-tuning {chosen.stages} {stages} gained {gain:.1f} pts on val over the frozen "
        "features"
    )


def against_scratch(probe_val: float, scratch_val: float) -> str:
    """The linear probe against a small model trained from scratch, in words."""
    gap = (scratch_val - probe_val) * 100
    if gap > DOMAIN_GAP_PT:
        return (
            f"a small CNN trained from scratch beats the frozen features by {gap:.1f} pts on val "
            f"({scratch_val:.2%} vs the linear probe's {probe_val:.2%}): a sign of a domain gap "
            "or negative transfer; fine-tune the backbone (--unfreeze auto) or pick another"
        )
    return (
        f"the frozen features beat a small CNN trained from scratch by {-gap:.1f} pts on val "
        f"({probe_val:.2%} vs {scratch_val:.2%}): transfer helps here"
        if gap < 0
        else f"the frozen features and a small CNN trained from scratch are within {gap:.1f} "
        f"pts on val ({probe_val:.2%} vs {scratch_val:.2%})"
    )
