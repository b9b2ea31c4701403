"""Target profiles as the backends read them: the common keys (core/targets.py) and the
backend's own table, checked by its options dataclass when the profile is loaded."""

from __future__ import annotations

from edgetl.backends.registry import get_runtime
from edgetl.core import targets
from edgetl.core.targets import TargetProfile


def load_target(name: str) -> TargetProfile:
    """A profile by name or path, its backend's settings checked (exit 2 naming the key)."""
    return _checked(targets.load_target(name))


def list_targets() -> list[TargetProfile]:
    return [_checked(profile) for profile in targets.list_targets()]


def _checked(profile: TargetProfile) -> TargetProfile:
    get_runtime(profile.backend).options(profile.options, profile.source)
    return profile
