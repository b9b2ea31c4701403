"""The Pareto front of the search's measured candidates (latency against val top-1), the
choice on it, and INT8 candidates that leave the running for not paying off."""

from __future__ import annotations

from dataclasses import replace

from edgetl.stages.search.state import RANKED, Record, Status


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


def drop_unpaid(records: list[Record], pays_off_at: float) -> None:
    """INT8 candidates slower than `pays_off_at` x their FP32 twin's p50 (timed in the same
    rounds): dropped before anything is trained or quantized for them."""
    fp32 = {replace(r.candidate, precision="int8").arch: r for r in records
            if r.precision == "fp32" and r.p50_ms is not None}  # fmt: skip
    for record in records:
        twin = fp32.get(record.candidate.arch)
        if record.precision != "int8" or twin is None or record.status != Status.PENDING:
            continue
        assert record.p50_ms is not None and twin.p50_ms is not None
        ratio = record.p50_ms / twin.p50_ms
        if ratio > pays_off_at:
            record.status = Status.NO_PAYOFF
            record.reason = (f"p50 {record.p50_ms:.2f} ms = {ratio:.2f}x FP32's {twin.p50_ms:.2f}"
                             f" ms (INT8 must be <= {pays_off_at:g}x to pay off)")  # fmt: skip
