"""The Pareto front of the search's measured candidates: latency against val top-1."""

from __future__ import annotations

from edgetl.stages.search.state import RANKED, Record


def front(records: list[Record]) -> list[Record]:
    """The Pareto front of latency (p50, lower) and val top-1 (higher) among the measured."""
    scored = sorted((r for r in records if r.val_top1 is not None and r.status in RANKED),
                    key=lambda r: (r.p50_ms, -(r.val_top1 or 0), r.size_mb or 0,
                                   r.unfreeze))  # fmt: skip
    kept, best = [], -1.0
    for record in scored:
        if (record.val_top1 or 0) > best:
            kept.append(record)
            best = record.val_top1 or 0
    return kept


def choose(records: list[Record]) -> Record | None:
    """The highest val top-1 within budget; ties: the faster, the smaller, the less
    fine-tuned."""
    on_front = front(records)
    if not on_front:
        return None
    return max(on_front, key=lambda r: (r.val_top1, -(r.p50_ms or 0), -(r.size_mb or 0),
                                        -r.unfreeze))  # fmt: skip
