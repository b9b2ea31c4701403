"""Runtimes behind one device-side protocol (base.py) with their host-side compilers
(compiler.py, export only), found by name (registry.py), and the one rule for which of them
runs a target's model on this machine (placement.py)."""

from __future__ import annotations

from edgetl.backends.base import Runner, Runtime, RuntimeSpec, run_all
from edgetl.backends.placement import Placement, resolve
from edgetl.backends.registry import BACKENDS, get_compiler, get_runtime

__all__ = [
    "BACKENDS",
    "Placement",
    "Runner",
    "Runtime",
    "RuntimeSpec",
    "get_compiler",
    "get_runtime",
    "resolve",
    "run_all",
]
