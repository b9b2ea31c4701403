"""One fields-driven reader and writer for edgetl's typed records (timm's `PretrainedCfg`
with `to_dict`, in both directions): a dataclass's fields and type hints are its schema.

Every file edgetl reads goes through it: runs, manifests and bench reports (JSON), target
profiles, backend options and recipes (TOML). `read_fields(Cls, data, Source(path, ...))`
checks each value against its field's type (str, int, float, bool, Literal, lists, tuples,
optionals, dicts of str, nested dataclasses) and names the file, the key path and, for
records, the edgetl that wrote it. `write_fields(obj)` is the inverse: plain JSON values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from edgetl.core.errors import EdgetlError

T = TypeVar("T")
# How a kind is named in messages when a list of it is wrong.
PLURALS = {float: "numbers", int: "integers", str: "strings", bool: "true/false values"}


@dataclass(frozen=True)
class Source:
    """Where values come from: the file, the key path so far, and how strict to be.

    `strict`: an unknown key is an error (profiles, options, recipes: a typo must not be
    ignored); records ignore keys a later edgetl added. `remedy` ends every message."""

    path: str
    prefix: str = ""
    strict: bool = True
    remedy: str = ""

    def key(self, name: str) -> Source:
        return dataclasses.replace(self, prefix=f"{self.prefix}{name}.")

    def item(self, name: str, index: int) -> Source:
        return dataclasses.replace(self, prefix=f"{self.prefix}{name}[{index}].")

    def error(self, message: str) -> EdgetlError:
        return EdgetlError(f"{self.path}: {message}{self.remedy}")


def read_fields(cls: type[T], data: Any, source: Source) -> T:
    """An instance of the dataclass `cls` from the mapping `data`; EdgetlError naming the key."""
    if not isinstance(data, Mapping):
        where = source.prefix.rstrip(".") or "the file"
        found = f"{type(data).__name__} {str(data)[:40]!r}"
        raise source.error(f"{where}: expected a table of keys, found {found} (the wrong type)")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown and source.strict:
        names = [source.prefix + name for name in unknown]
        raise source.error(f"unknown keys {names}; known: {', '.join(sorted(fields))}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(data[name], hints[name], name, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise source.error(f"missing key {source.prefix + name!r}")
    return cls(**values)


def write_fields(obj: Any) -> dict[str, Any]:
    """The dataclass `obj` as plain JSON/TOML values, field by field (tuples as lists); a
    field marked `metadata={"omit": None}` is left out while it is None (an optional block
    that older readers do not expect as null)."""
    return {
        f.name: plain(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if not ("omit" in f.metadata and getattr(obj, f.name) is None)
    }


def plain(value: Any) -> Any:
    """Any value of a record (records, lists, tuples, dicts) as plain JSON/TOML values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return write_fields(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def _convert(value: Any, kind: Any, name: str, source: Source) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(value, options[0], name, source)
        for option in options:
            try:
                return _convert(value, option, name, source)
            except EdgetlError:
                continue
        raise _wrong(value, _name(kind), name, source)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(map(repr, args))
            raise source.error(f"{source.prefix}{name}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple):
        return _sequence(value, kind, name, source)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong(value, _name(kind), name, source)
        inner = source.key(name)
        return {str(k): _convert(v, args[1], str(k), inner) for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return read_fields(kind, value, source.key(name))  # type: ignore[arg-type]
    if not _is(value, kind):
        raise _wrong(value, _name(kind), name, source)
    return float(value) if kind is float else value


def _sequence(value: Any, kind: Any, name: str, source: Source) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    if not isinstance(value, (list, tuple)):
        raise _wrong(value, _name(kind), name, source)
    fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
    if fixed and len(value) != len(args):
        raise source.error(f"{source.prefix}{name}: expected {len(args)} values, found {value!r}")
    kinds = args if fixed else [args[0]] * len(value)
    scalar = {k for k in kinds if k in PLURALS}
    if scalar and not all(_is(v, k) for v, k in zip(value, kinds, strict=True)):
        raise source.error(f"{source.prefix}{name}: expected a list of {PLURALS[kinds[0]]}")
    pairs = enumerate(zip(value, kinds, strict=True))
    items = [_convert(v, k, f"{name}[{i}]", source) for i, (v, k) in pairs]
    return items if origin is list else tuple(items)


def _is(value: Any, kind: Any) -> bool:
    """`value` is of the scalar `kind` (a bool is not a number; an int is a float)."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _wrong(value: Any, expected: str, name: str, source: Source) -> EdgetlError:
    found = f"{type(value).__name__} {str(value)[:40]!r}"
    return source.error(
        f"{source.prefix}{name}: expected {expected}, found {found} (the wrong type)"
    )


def _name(kind: Any) -> str:
    """A type as people write it: list[float], dict[str, int], float."""
    return str(kind).replace("typing.", "") if get_origin(kind) else kind.__name__
