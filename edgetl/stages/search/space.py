"""The candidates: backbone x input size x head x precision, each an architecture whose
latency is known before any weight is trained."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from edgetl.core.errors import EdgetlError

HEADS = {"linear": 0}  # name -> hidden units; "mlpN" adds an MLP of N units


@dataclass(frozen=True)
class Candidate:
    backbone: str
    size: int
    head: str  # linear, mlp256, ...
    precision: str  # fp32, fp16, int8
    unfreeze: int = 0  # backbone stages fine-tuned (0: the head on frozen features)

    @property
    def key(self) -> str:
        return self.arch + (f"/unfreeze{self.unfreeze}" if self.unfreeze else "")

    @property
    def arch(self) -> str:
        """What latency depends on (not the weights: fine-tuning stages changes none)."""
        return f"{self.backbone}@{self.size}/{self.head}/{self.precision}"

    @property
    def features(self) -> str:
        """What one feature extraction serves: backbone x size."""
        return f"{self.backbone}@{self.size}"

    @property
    def hidden(self) -> int:
        return head_hidden(self.head)


def head_hidden(name: str) -> int:
    if name in HEADS:
        return HEADS[name]
    if name.startswith("mlp") and name[3:].isdigit() and int(name[3:]) > 0:
        return int(name[3:])
    raise EdgetlError(f"--heads {name}: give linear or mlpN (e.g. mlp256)")


def grid(
    backbones: list[str],
    sizes: list[int],
    heads: list[str],
    precisions: list[str],
    unfreezes: list[int] = [0],  # noqa: B006 - never mutated
) -> list[Candidate]:
    for head in heads:
        head_hidden(head)
    for size in sizes:
        if not 16 <= size <= 1024:
            raise EdgetlError(f"--sizes {size}: give input sizes of 16..1024 pixels")
    if any(k < 0 for k in unfreezes):
        raise EdgetlError(f"--unfreeze {unfreezes}: give stage counts >= 0, e.g. 0,1,2")
    return [
        Candidate(b, s, h, p, k)
        for b, s, h, p, k in product(backbones, sizes, heads, precisions, unfreezes)
    ]


def split_list(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise EdgetlError(f"{option} {text!r}: give a comma-separated list")
    return list(dict.fromkeys(items))
