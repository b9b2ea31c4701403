"""search.json: every candidate's record, written after each step, so an interrupted search
resumes where it stopped (with the feature cache, nothing measured is measured again)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.core.constants import INT8_PAYS_OFF_RATIO
from edgetl.core.errors import EdgetlError
from edgetl.core.files import atomic_write_json
from edgetl.stages.search.space import Candidate

SEARCH_SCHEMA = "edgetl.search/1"
# Settings added after search.json first shipped, as a file written before them had them.
ADDED_SETTINGS: dict[str, Any] = {"int8_payoff": INT8_PAYS_OFF_RATIO}
SEARCH_FILE = "search.json"


class Status(str, Enum):
    """Where a candidate stands; the values are what search.json and the table say."""

    PENDING = "pending"
    OVER_BUDGET = "over budget"
    NO_PAYOFF = "int8 does not pay off"  # not faster than its FP32 twin by the margin
    DOMINATED = "dominated"
    ON_THE_FRONT = "on the front"
    CHOSEN = "chosen"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


# Measured and still in the running: what the front is drawn from.
RANKED = (Status.PENDING, Status.ON_THE_FRONT, Status.DOMINATED, Status.CHOSEN)


@dataclass
class Record:
    key: str
    backbone: str
    size: int
    head: str
    precision: str
    unfreeze: int = 0  # backbone stages fine-tuned with the head
    status: Status = Status.PENDING
    reason: str = ""  # why over budget or failed
    p50_ms: float | None = None
    p90_ms: float | None = None
    size_mb: float | None = None
    runtime: str = ""
    val_top1: float | None = None  # chosen on
    test_top1: float | None = None  # reported for the chosen and the front, never chosen on
    trained: bool = False  # a head was trained for it (never for one over budget)

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.backbone, self.size, self.head, self.precision, self.unfreeze)


@dataclass
class SearchState:
    settings: dict[str, Any]  # what the search was asked; a resume must ask the same
    records: dict[str, Record] = field(default_factory=dict)
    chosen: str | None = None
    seconds: float = 0.0
    stopped: str = ""  # why it stopped early (the budget), "" when it finished
    budget_ms: float | None = None  # the latency budget, resolved once the latency is measured
    reference: dict[str, Any] | None = None  # --reference timed with the candidates

    def budget_words(self) -> str:
        """The latency budget as asked, and in ms once resolved: "0.8 ms", "1.2x
        runs/prod (0.63 ms) = 0.756 ms"."""
        settings = self.settings
        if settings.get("max_latency_x") is None:
            return f"{settings['max_latency_ms']:g} ms"
        words = f"{settings['max_latency_x']:g}x {settings['reference']}"
        if self.reference is not None and self.budget_ms is not None:
            measured = self.reference[f"{settings['latency']}_ms"]
            words += f" ({measured:.3g} ms, timed with the candidates) = {self.budget_ms:.3g} ms"
        return words

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SEARCH_SCHEMA,
            "edgetl": __version__,
            "settings": self.settings,
            "chosen": self.chosen,
            "seconds": round(self.seconds, 1),
            "stopped": self.stopped,
            "budget_ms": self.budget_ms,
            "reference": self.reference,
            "candidates": [asdict(record) for record in self.records.values()],
        }

    def write(self, folder: Path) -> None:
        atomic_write_json(folder / SEARCH_FILE, self.to_dict())


def resume(folder: Path, settings: dict[str, Any]) -> SearchState:
    """The state in `folder`/search.json when it was asked the same, else a new one."""
    path = folder / SEARCH_FILE
    if not path.is_file():
        return SearchState(settings)
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != SEARCH_SCHEMA:
            raise ValueError(f"schema {data.get('schema')}")
        records = {
            item["key"]: Record(**{**item, "status": Status(item.get("status", "pending"))})
            for item in data["candidates"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgetlError(
            f"{path}: not a search state this edgetl reads ({exc}); use another --out or "
            "--force to start again"
        ) from exc
    before = {**ADDED_SETTINGS, **data.get("settings", {})}
    if before != settings:
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        raise EdgetlError(
            f"{path}: a search with other settings ({', '.join(changed)}); use another --out, "
            "or --force to start again"
        )
    seconds = float(data.get("seconds", 0))
    return SearchState(
        settings, records, data.get("chosen"), seconds, "", data.get("budget_ms"),
        data.get("reference"),
    )  # fmt: skip
