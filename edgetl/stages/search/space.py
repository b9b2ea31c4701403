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

    @property
    def key(self) -> str:
        return f"{self.backbone}@{self.size}/{self.head}/{self.precision}"

    @property
    def arch(self) -> str:
        """What latency depends on (not the weights)."""
        return self.key

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
    backbones: list[str], sizes: list[int], heads: list[str], precisions: list[str]
) -> list[Candidate]:
    for head in heads:
        head_hidden(head)
    for size in sizes:
        if not 16 <= size <= 1024:
            raise EdgetlError(f"--sizes {size}: give input sizes of 16..1024 pixels")
    return [Candidate(b, s, h, p) for b, s, h, p in product(backbones, sizes, heads, precisions)]


def split_list(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise EdgetlError(f"{option} {text!r}: give a comma-separated list")
    return list(dict.fromkeys(items))
