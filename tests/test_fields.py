"""The one record reader and writer (core/fields.py) that runs, manifests, bench reports,
profiles, backend options and recipes all go through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields, write_fields


@dataclass(frozen=True)
class Inner:
    max_abs_diff: float
    min_agreement: float = 1.0


@dataclass(frozen=True)
class Record:
    name: str
    size: int
    mode: Literal["fast", "slow"] = "fast"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    samples: list[float] = field(default_factory=list)
    parity: dict[str, Inner] = field(default_factory=dict)
    proxy: str | None = None
    extra: Inner | None = field(default=None, metadata={"omit": None})


GOOD = {
    "name": "a",
    "size": 3,
    "mode": "slow",
    "mean": [0.5, 0.5, 0.5],
    "samples": [1, 2.5],
    "parity": {"int8": {"max_abs_diff": 0.01, "min_agreement": 0.99}},
    "proxy": None,
}


def test_a_record_round_trips_and_optional_blocks_stay_absent() -> None:
    record = read_fields(Record, GOOD, Source("r.json"))
    assert record.mean == (0.5, 0.5, 0.5) and record.samples == [1.0, 2.5]
    assert record.parity["int8"] == Inner(0.01, 0.99)
    written = write_fields(record)
    assert "extra" not in written and written["proxy"] is None  # omitted only where marked
    assert read_fields(Record, written, Source("r.json")) == record


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": True}, "r.json: size: expected int, found bool 'True' (the wrong type)"),
        ({"size": "3"}, "size: expected int, found str '3'"),
        ({"mode": "medium"}, "mode: 'medium' is not one of 'fast', 'slow'"),
        ({"mean": [0.5, 0.5]}, "mean: expected 3 values"),
        ({"samples": ["1"]}, "samples: expected a list of numbers"),
        ({"samples": "fast"}, "samples: expected list[float], found str 'fast'"),
        ({"parity": {"int8": {"max_abs_diff": "x"}}}, "parity.int8.max_abs_diff: expected float"),
        ({"parity": {"int8": 3}}, "parity.int8: expected a table of keys, found int '3'"),
        ({"proxy": 1}, "proxy: expected str, found int '1'"),
    ],
)
def test_a_wrong_value_is_named_with_its_key_path(change: dict, message: str) -> None:
    with pytest.raises(EdgetlError) as error:
        read_fields(Record, {**GOOD, **change}, Source("r.json"))
    assert message in str(error.value)


def test_missing_and_unknown_keys() -> None:
    with pytest.raises(EdgetlError, match="r.json: missing key 'size'; redo"):
        read_fields(Record, {"name": "a"}, Source("r.json", remedy="; redo"))
    with pytest.raises(EdgetlError, match=r"unknown keys \['parity.int8.typo'\]"):
        read_fields(
            Record, {**GOOD, "parity": {"int8": {"max_abs_diff": 1, "typo": 2}}}, Source("r")
        )
    # Records read files a later edgetl may have extended: unknown keys are passed over.
    lenient = read_fields(Record, {**GOOD, "added_later": 1}, Source("r", strict=False))
    assert lenient.name == "a"
