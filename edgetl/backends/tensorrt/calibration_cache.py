"""TensorRT's calibration cache (text), for TensorRT 10 users who still build with implicit
INT8 calibration from the FP32 ONNX model.

    TRT-<version>-EntropyCalibration2
    <tensor name>: <float32 scale as 8 hex digits, big-endian IEEE 754>

One line per activation tensor of the FP32 graph, with the scale of the quantizer that reads
that tensor in the Q/DQ model (read from it by compiler.activation_scales, on the host):
both builds then use the same ranges.
"""

from __future__ import annotations

import struct

import numpy as np

from edgetl.core.errors import EdgetlError

HEADER = "TRT-{version}-EntropyCalibration2"


def write_cache(scales: dict[str, float], version: int) -> str:
    lines = [HEADER.format(version=version)]
    lines += [
        f"{name}: {struct.pack('>f', np.float32(scale)).hex()}" for name, scale in scales.items()
    ]
    return "\n".join(lines) + "\n"


def parse_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, tensor -> scale); an error names the line that does not parse."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise EdgetlError("calibration cache: the first line must be TRT-<version>-<algorithm>")
    scales = {}
    for number, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(": ")
        try:
            if not sep or len(value) != 8:
                raise ValueError("expected 'tensor: 8 hex digits'")
            scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
        except ValueError as exc:
            raise EdgetlError(f"calibration cache line {number}: {line!r} ({exc})") from exc
    return lines[0], scales
