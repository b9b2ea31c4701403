"""The one accuracy record: a task's measure on `n` images. Every accuracy edgetl records is
one (the artifact on a split in the manifest, a bench entry, each class of it), extended
with what that seam adds: the FP32 comparison (SplitAccuracy), the per-class breakdown
(BenchAccuracy). Classification measures top-1; detection adds its measure here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accuracy:
    n: int  # images measured
    top1: float  # share whose top-1 class is the label (core/measures/metrics.top1)
