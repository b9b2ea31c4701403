"""The command line: click commands and their terminal/JSON output (the top layer)."""

from edgetl.cli.main import main

__all__ = ["main"]
