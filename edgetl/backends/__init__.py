"""Runtimes behind one protocol (base.py), found by name (registry.py), and the one rule for
which of them runs a target's model on this machine (placement.py)."""

from __future__ import annotations

from edgetl.backends.base import Backend, Runner, RuntimeSpec, run_all
from edgetl.backends.placement import Placement, resolve
from edgetl.backends.registry import BACKENDS, get_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "Placement",
    "Runner",
    "RuntimeSpec",
    "get_backend",
    "resolve",
    "run_all",
]
