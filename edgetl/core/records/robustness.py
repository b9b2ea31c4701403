"""`bench --robustness` in the bench report: accuracy under camera conditions and under an
attack crafted from the public teacher alone, and the gate's verdict on them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Condition:
    """One condition's accuracy on the same images as the clean one."""

    family: str  # a corruption family ("gaussian_noise") or the attack ("pgd")
    level: float  # severity 1..5, or epsilon in 1/255
    score: float  # the task's measure (Robustness.measure): top-1, or mAP50-95
    # Classifiers: the share of images given the clean answer (the rest flipped); detectors:
    # the share of the clean detections found again (same class, IoU >= 0.5)
    kept: float
    inputs_sha256: str  # the pixels fed to the model: two machines compare like with like


@dataclass(frozen=True)
class AttackInfo:
    """Where the adversarial images came from (the attack file's own record)."""

    file: str
    sha256: str
    method: str  # "pgd 10 steps, L-inf" ...
    backbone: str  # the public weights the attacker used (name and source)
    weights_sha256: str
    surrogate: str  # how the attacker's head was fitted, in words
    # A model trained from scratch on the same split (finetune --scratch-baseline) under the
    # same images: "clean" and each epsilon -> top-1. Empty when the run kept none.
    scratch: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Robustness:
    n: int  # images per condition (the reference set)
    clean: float  # the plain bench's measure on the same images
    measure: str = "top-1"  # or "mAP50-95" (detectors)
    suite: str = ""  # the corruption suite's name and file
    seed: int = 0
    corruptions: list[Condition] = field(default_factory=list)
    families: dict[str, float] = field(default_factory=dict)  # family -> mean over severities
    mean_corrupted: float | None = field(default=None, metadata={"omit": None})
    relative: float | None = field(default=None, metadata={"omit": None})  # mean / clean
    attack: list[Condition] = field(default_factory=list)
    attack_info: AttackInfo | None = field(default=None, metadata={"omit": None})
    finding: str = ""  # in words: what the attack and the conditions did


@dataclass(frozen=True)
class RobustnessCheck:
    """`--baseline` on robustness: points lost against the baseline's same measures."""

    mean_corrupted_drop_pts: float | None
    attack_drop_pts: dict[str, float]  # epsilon ("4") -> points
    max_drop_pts: float
    failed: bool
