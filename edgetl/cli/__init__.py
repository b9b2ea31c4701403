"""The command line (the top layer): the group in app.py, a module per command, and what
they print (output.py). Importing a command module registers it on the group."""

from edgetl.cli import (  # noqa: F401  (registration)
    attack,
    bench,
    build,
    cache,
    compare,
    devices,
    export,
    finetune,
    inspect,
    keygen,
    predict,
    probe,
    quickstart,
    search,
    targets,
)
from edgetl.cli.app import main

__all__ = ["main"]
