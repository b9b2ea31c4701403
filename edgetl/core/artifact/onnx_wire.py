"""The external-data locations an ONNX file names, read from protobuf's wire format with no
onnx package: the device side (load, predict, bench) has none, and skipped the check that an
ONNX file's external weights are files the manifest lists (issue 26).

Only the path to tensors is walked; a tensor's bytes are skipped, not copied. The field
numbers are onnx.proto3's (ONNX 1.x, stable since external data was added in 1.3):
ModelProto.graph 7, .functions 25; GraphProto.node 1, .initializer 5, .sparse_initializer 15;
FunctionProto.node 7; NodeProto.attribute 5; AttributeProto.t 5, .g 6, .tensors 10,
.graphs 11, .sparse_tensor 22, .sparse_tensors 23; SparseTensorProto.values 1, .indices 2;
TensorProto.external_data 13; StringStringEntryProto.key 1, .value 2.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

# message kind -> {field number: kind of the message it holds}
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def external_locations(data: bytes | memoryview | mmap.mmap) -> list[str]:
    """Every `location` of external data in the ONNX model `data`, in file order."""
    found: list[str] = []
    with memoryview(data) as view:
        _walk(view, "model", found, 0)
    return found


def _walk(data: memoryview, kind: str, found: list[str], depth: int) -> None:
    if depth > 64:
        raise WireError("messages nested over 64 deep")
    if kind == "entry":
        fields = dict((number, bytes(value)) for number, value in _fields(data) if number < 3)
        if fields.get(1) == b"location" and 2 in fields:
            found.append(fields[2].decode("utf-8", errors="replace"))
        return
    children = _SCHEMA[kind]
    for number, value in _fields(data):
        if number in children and isinstance(value, memoryview):
            _walk(value, children[number], found, depth + 1)


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview | int]]:
    """(field number, value) of each field: length-delimited values as views, others as ints
    (their value is never needed)."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == _VARINT:
            value, position = _varint(data, position)
            yield number, value
        elif wire == _BYTES:
            length, position = _varint(data, position)
            if position + length > end:
                raise WireError("a field runs past the end of its message")
            yield number, data[position : position + length]
            position += length
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
            if position > end:
                raise WireError("a fixed-size field runs past the end of its message")
            yield number, 0
        else:
            raise WireError(f"wire type {wire} (groups are not ONNX's)")


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise WireError("a truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
