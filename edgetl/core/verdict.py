"""Verdicts as results: a stage that checks something returns what it measured together with
`passed` and `failures`, and the command line alone turns a failed verdict into exit 1 (after
printing the result, so `--json` always shows what was decided)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

from edgetl.core.errors import CheckFailed

R = TypeVar("R")


@runtime_checkable
class Verdict(Protocol):
    @property
    def passed(self) -> bool: ...

    @property
    def failures(self) -> list[str]: ...


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """A report, and what failed in it (a regression, a device that failed): a Verdict."""

    report: R
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def check(verdict: Verdict) -> None:
    """CheckFailed (exit 1) naming every failure, when the verdict did not pass."""
    if not verdict.passed:
        raise CheckFailed("; ".join(verdict.failures) or "a check failed")
