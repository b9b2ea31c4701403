"""The `edgetl` group, the exit-code mapping every command shares, and shared options."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from edgetl import __version__
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.events import reporting
from edgetl.core.ui import make_console

F = TypeVar("F", bound=Callable[..., Any])
# Signed artifacts (export --sign): bench, predict, build and compare refuse any other.
trust_option = click.option(
    "--trust",
    "trust",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A public key (ed25519, PEM or OpenSSH .pub) that must have signed the artifact; "
    "repeat for several.",
)
INTERNAL_ERROR = 3  # neither bad input (2) nor a failed check (1): a bug in edgetl


def handle_errors(func: F) -> F:
    """Map EdgetlError to exit 2, CheckFailed to exit 1 and anything else to exit 3 ("a bug"),
    each with a one-line message and no traceback (EDGETL_DEBUG=1 shows it)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        console = Console(stderr=True, highlight=False)
        try:
            with reporting(make_console()):  # the stages' progress and messages (core/events)
                return func(*args, **kwargs)
        except (EdgetlError, CheckFailed) as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("EDGETL_DEBUG"):
                raise
            console.print(
                f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}. "
                f"This is a bug in edgetl {__version__}; please report it with the command "
                "line (EDGETL_DEBUG=1 shows the traceback)",
                soft_wrap=True,
            )
            sys.exit(INTERNAL_ERROR)

    return wrapper  # type: ignore[return-value]


def _terminate_as_interrupt() -> None:
    """SIGTERM (CI's cancel, `kill`, systemd) cleans up as Ctrl-C does: staging, scratch
    and lock removed, nothing half-written left (its default ends the process at once).
    Only where nobody set a handler of their own, and only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetl")
def main() -> None:
    """Fine-tune a head on a frozen pretrained backbone and ship it to edge devices."""
    _terminate_as_interrupt()
