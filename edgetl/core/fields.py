"""One fields-driven reader and writer for edgetl's typed records (timm's `PretrainedCfg`
with `to_dict`, in both directions): a dataclass's fields and type hints are the schema.

`read_fields(Cls, mapping, where)` checks every value against its field's type (str, int,
float, bool, lists, tuples, optionals, dicts of str, nested dataclasses, Literal) and names
the key and `where` in the error; unknown keys are errors too. `write_fields(obj)` is its
inverse (tuples become lists, None fields are kept).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from edgetl.core.errors import EdgetlError

T = TypeVar("T")


def read_fields(cls: type[T], data: Any, where: str) -> T:
    """An instance of the dataclass `cls` from `data`, or EdgetlError naming the key."""
    if not isinstance(data, Mapping):
        raise EdgetlError(f"{where}: expected a table of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise EdgetlError(f"{where}: unknown keys {unknown}; known: {', '.join(sorted(fields))}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(data[name], hints[name], f"{where}: {name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise EdgetlError(f"{where}: missing key {name!r}")
    return cls(**values)


def write_fields(obj: Any) -> dict[str, Any]:
    """The dataclass `obj` as plain JSON/TOML values, field by field."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return write_fields(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _convert(value: Any, kind: Any, where: str) -> Any:  # noqa: C901 - one case per kind
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(value, option, where)
            except EdgetlError as exc:
                errors.append(str(exc))
        raise EdgetlError(errors[0] if len(options) == 1 else f"{where}: {value!r} fits no type")
    if origin is Literal:
        if value not in args:
            raise EdgetlError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise EdgetlError(f"{where}: must be a list, e.g. [{_example(args[0])}]")
        items = [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise EdgetlError(f"{where}: must be a table of keys")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return read_fields(kind, value, where)  # type: ignore[arg-type]
    return _scalar(value, kind, where)


def _scalar(value: Any, kind: Any, where: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise EdgetlError(f"{where}: must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EdgetlError(f"{where}: must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EdgetlError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise EdgetlError(f"{where}: must be a string, got {value!r}")
        return value
    raise TypeError(f"{where}: no reader for {kind!r}")  # a field type edgetl forgot


def _example(kind: Any) -> str:
    return {str: '"a", "b"', int: "1, 2", float: "0.5, 1.0"}.get(kind, "...")
