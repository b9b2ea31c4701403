"""A stage's options declared once: each is a dataclass field whose metadata says how it is
given on the command line (cli/declared.py makes the click option from it) and how it is
relayed to a lab device (argv below). Defaults, help and names then cannot drift apart.

    @dataclass
    class BenchOptions:
        iterations: int = option(200, "Batch-1 samples, at least.", remote=True)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

T = TypeVar("T")
OPTION = "edgetl.option"  # the metadata key


@dataclass(frozen=True)
class Opt:
    """How a field is given as a command-line option."""

    help: str = ""
    flag: str | None = None  # default: --field-name
    choices: tuple[str, ...] | None = None
    negatable: bool = False  # a bool given as --x/--no-x (else a flag that turns it on)
    metavar: str | None = None
    # Text -> value (ValueError with what to give), for values typed as text: "1,8" -> (1, 8)
    parse: Callable[[str], Any] | None = None
    unparse: Callable[[Any], str] = str  # value -> text: the default shown, a remote argument
    remote: bool = False  # relayed to a lab device's `edgetl` with the same command
    show_default: bool = True


def option(default: Any = MISSING, help: str = "", *, factory: Any = MISSING, **how: Any) -> Any:
    """A dataclass field given on the command line; `how` as Opt's fields."""
    metadata = {OPTION: Opt(help, **how)}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    """One declared option of an options class: its field, how it is given and its type
    (with None taken out: `int | None` is int, optional)."""

    name: str
    opt: Opt
    kind: Any
    default: Any  # MISSING when the option is required

    @property
    def flag(self) -> str:
        return self.opt.flag or "--" + self.name.replace("_", "-")


def declared(cls: type) -> Iterator[Declared]:
    """The fields of `cls` declared with option(), in their order."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        opt = field.metadata.get(OPTION)
        if opt is None:
            continue
        default = field.default
        if field.default_factory is not MISSING:
            default = field.default_factory()
        yield Declared(field.name, opt, _without_none(hints[field.name]), default)


def _without_none(kind: Any) -> Any:
    if typing.get_origin(kind) not in (typing.Union, types.UnionType):
        return kind
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if len(args) == 1 else kind


def argv(opts: Any) -> list[str]:
    """The remote options of `opts` as arguments of the same command on a lab device: what
    is None or an unset flag is left out, so the device applies its own default."""
    args: list[str] = []
    for item in declared(type(opts)):
        if not item.opt.remote:
            continue
        value = getattr(opts, item.name)
        if item.kind is bool:
            if item.opt.negatable:
                args.append(item.flag if value else "--no-" + item.flag[2:])
            elif value:
                args.append(item.flag)
        elif value is not None:
            args += [item.flag, item.opt.unparse(value)]
    return args


def carried(cls: type[T], source: Any, **given: Any) -> T:
    """An options object of `cls` taking each field `source` has of the same name (one
    stage's options handing its terms to the stage it runs), then `given`."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    shared = {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    values = {k: v for k, v in shared.items() if k in names} | given
    return cls(**values)


def numbers(text: str) -> tuple[int, ...]:
    """ "1,8" -> (1, 8); ValueError saying what to give."""
    try:
        found = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("give whole numbers, comma-separated, like 1,8") from None
    if not found:
        raise ValueError("give at least one number")
    return found


def names(text: str) -> list[str]:
    """ "a, b" -> ["a", "b"]; ValueError when none is given."""
    found = [part.strip() for part in text.split(",") if part.strip()]
    if not found:
        raise ValueError("give at least one, comma-separated")
    return found


def joined(values: Any) -> str:
    return ",".join(str(v) for v in values)
