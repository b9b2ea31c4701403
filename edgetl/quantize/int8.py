"""Small helpers around an INT8 graph: its metadata, and whether it pays off here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from edgetl.backends import Runner
from edgetl.core.constants import INT8_PAYS_OFF_RATIO
from edgetl.core.measures.regression import paired_ratio
from edgetl.core.measures.timing import measure

PAYS_OFF_RATIO = INT8_PAYS_OFF_RATIO
SPEED_ROUNDS = 10  # alternating pairs of rounds (FP32 first, then INT8 first)
SPEED_SAMPLES = 20  # batch-1 runs per model per round


def compare_speed(
    fp32: Runner, int8: Runner, single: np.ndarray, pays_off_at: float = PAYS_OFF_RATIO
) -> dict[str, Any]:
    """FP32 and INT8 timed side by side in alternating rounds: their p50s, the ratio with its
    95% interval over rounds, and whether INT8 pays off (ratio <= `pays_off_at`)."""
    calls: dict[str, Callable[[], object]] = {
        "fp32": lambda: fp32.run(single), "int8": lambda: int8.run(single)
    }  # fmt: skip
    rounds: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
    first: list[bool] = []
    for name in calls:
        measure(calls[name], 0, 10)  # warm both up before any timed round
    for index in range(SPEED_ROUNDS):
        order = ["fp32", "int8"] if index % 2 == 0 else ["int8", "fp32"]
        for name in order:
            rounds[name].append(measure(calls[name], SPEED_SAMPLES))
        first.append(order[0] == "fp32")
    verdict = paired_ratio(rounds["fp32"], rounds["int8"], 0.0, base_first=first)
    return {
        "fp32_p50_ms": round(float(np.median(np.concatenate(rounds["fp32"]))), 4),
        "int8_p50_ms": round(float(np.median(np.concatenate(rounds["int8"]))), 4),
        "ratio": round(verdict.ratio, 3),
        "ratio_low": round(verdict.low, 3),
        "ratio_high": round(verdict.high, 3),
        "pays_off_at": pays_off_at,
        "pays_off": bool(verdict.ratio <= pays_off_at),
    }


def payoff_line(speed: dict[str, Any]) -> str:
    """What the report says of INT8's speed here."""
    told = (f"INT8 p50 here {speed['ratio']:.2f}x FP32's ({speed['int8_p50_ms']:.2f} vs "
            f"{speed['fp32_p50_ms']:.2f} ms; 95% {speed['ratio_low']:.2f}-"
            f"{speed['ratio_high']:.2f}x)")  # fmt: skip
    if speed["pays_off"]:
        return f"{told}: pays off"
    return (f"{told}: does NOT pay off here (needs <= {speed['pays_off_at']:.2f}x); "
            "ship FP32, or try another --recipe or target")  # fmt: skip


def copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    """The FP32 export's edgetl metadata (classes, preprocessing) onto the INT8 graph."""
    del target.metadata_props[:]
    for prop in source.metadata_props:
        target.metadata_props.add(key=prop.key, value=prop.value)
    target.metadata_props.add(key="edgetl.precision", value=json.dumps("int8"))
