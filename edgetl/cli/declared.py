"""Click options made from a stage's declared options (core/options.py): the names, types,
defaults and help live once, on the options dataclass."""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path
from typing import Any

import click

from edgetl.cli.app import F
from edgetl.core.options import Declared, declared


def options_of(
    cls: type, *, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None
) -> Any:
    """A decorator adding a click option for each option `cls` declares (all, `only` these,
    or all but `skip`), in the order of its fields; each arrives under its field's name."""
    made = [
        _click_option(item)
        for item in declared(cls)
        if item.name not in skip and (only is None or item.name in only)
    ]

    def apply(func: F) -> F:
        for make in reversed(made):
            func = make(func)
        return func

    return apply


def _click_option(item: Declared) -> Any:
    opt, kind = item.opt, item.kind
    settings: dict[str, Any] = {"help": opt.help, "metavar": opt.metavar}
    if item.default is MISSING:
        settings["required"] = True
    else:
        settings["default"] = item.default
        unset = item.default is None or item.default is False
        settings["show_default"] = opt.show_default and not unset
    if kind is bool:
        if opt.negatable:
            settings["show_default"] = opt.show_default
            return click.option(f"{item.flag}/--no-{item.flag[2:]}", item.name, **settings)
        return click.option(item.flag, item.name, is_flag=True, **settings)
    if opt.parse is not None:
        if item.default not in (MISSING, None):
            settings["default"] = opt.unparse(item.default)
        settings["callback"] = _parser(opt.parse)
    elif opt.choices is not None:
        settings["type"] = click.Choice(list(opt.choices))
    elif kind is Path:
        settings["type"] = click.Path(path_type=Path)
    elif _repeated_path(kind):
        settings["type"], settings["multiple"] = click.Path(path_type=Path), True
        settings.pop("show_default", None)
    elif kind in (int, float):
        settings["type"] = kind
    return click.option(item.flag, item.name, **settings)


def _repeated_path(kind: Any) -> bool:
    return getattr(kind, "__origin__", None) is tuple and kind.__args__[0] is Path


def _parser(parse: Any) -> Any:
    def callback(context: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:  # exit 2 in edgetl's words: "--batch x: give ..."
            raise click.UsageError(f"{param.opts[0]} {value}: {exc}", context) from exc

    return callback
