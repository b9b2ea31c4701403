"""The detector guard's ladder (stages/detect/guard.climb), its decisions apart from what
measures: plain INT8 with the decode float first, then the head's last layers float, then
those and the 1, 2, 4, ... layers the ranking puts first; the first the rule accepts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edgetl.core.records import Attempt
from edgetl.quantize.guard.report import Measured, Ranked, Ranking
from edgetl.stages.detect.guard import HEAD_OUTPUTS, climb

HEAD = [f"/detector{p}Conv" for p in HEAD_OUTPUTS]
LAYERS = [*HEAD, "/pyramid/a/Conv", "/pyramid/b/Conv", "/detector/neck/c/Conv"]


@dataclass
class Candidates:
    def quantized_layers(self) -> list[str]:
        return list(LAYERS)

    def build(self, layers: list[str]) -> frozenset[str]:
        return frozenset(layers)


@dataclass
class Judge:
    """A model's bound is 5 points less for each `needed` layer it keeps float."""

    needed: set[str]
    confidence: float = 0.9
    fp32_map: float = 0.5
    seen: list[frozenset[str]] = field(default_factory=list)

    def measure(self, name: str, model: Any, **details: Any) -> Measured[Any]:
        self.seen.append(model)
        bound = 5.0 * len(self.needed - model)
        attempt = Attempt(name=name, top1=0.5 - bound / 100, drop_pts=bound, agreement=1.0,
                          max_abs_diff=0.0, drop_upper_pts=bound, **details)  # fmt: skip
        return Measured(attempt, model, None, None)  # type: ignore[arg-type]

    def judge(self, measured: Measured[Any], budget: float) -> tuple[Measured[Any], bool]:
        ok = (measured.attempt.drop_upper_pts or 0) <= budget
        return replace(measured, attempt=replace(measured.attempt, verdict=str(ok))), ok


def ranked(base: list[str]) -> Ranking:
    order = ["/detector/neck/c/Conv", "/pyramid/b/Conv", "/pyramid/a/Conv"]
    layers = [Ranked(name, 0.1, 0.5) for name in order if name not in base]
    return Ranking(layers, 8, 0.6, 0.4, "map50_95")


def test_plain_int8_is_kept_when_it_fits() -> None:
    found = climb(Candidates(), Judge(set()), 1.0, ranked, 16)  # type: ignore[arg-type]
    assert found.chosen is not None and found.chosen.model == frozenset()
    assert [a.name for a in found.attempts] == ["plain (decode float)"]


def test_the_head_outputs_go_float_before_anything_is_ranked() -> None:
    judge = Judge(set(HEAD))
    found = climb(Candidates(), judge, 1.0, ranked, 16)  # type: ignore[arg-type]
    assert found.chosen is not None and found.chosen.model == frozenset(HEAD)
    assert found.ranking is None  # ranking (the slow part) never ran


def test_ranked_layers_are_added_in_doubling_counts_and_the_first_accepted_is_kept() -> None:
    judge = Judge({*HEAD, "/pyramid/b/Conv"})
    found = climb(Candidates(), judge, 1.0, ranked, 16)  # type: ignore[arg-type]
    names = [a.name for a in found.attempts]
    assert names == ["plain (decode float)", "head outputs float", "head outputs + 1 float",
                     "head outputs + 2 float"]  # fmt: skip
    assert found.chosen is not None
    assert found.chosen.model == frozenset({*HEAD, "/detector/neck/c/Conv", "/pyramid/b/Conv"})


def test_nothing_is_chosen_when_no_rung_fits() -> None:
    judge = Judge({"/not/a/layer"})
    found = climb(Candidates(), judge, 1.0, ranked, 2)  # type: ignore[arg-type]
    assert found.chosen is None
    assert all(a.verdict == "False" for a in found.attempts) and len(found.attempts) == 4


def test_layers_reading_one_tensor_are_ranked_as_one_unit() -> None:
    """Both towers read a neck level through one quantizer: either alone in float gains
    nothing while the other still reads the tensor INT8 wrecked, so they rank together."""
    from types import SimpleNamespace

    from onnx import helper

    from edgetl.stages.detect.guard import siblings

    nodes = [helper.make_node("Conv", ["level0", "w1"], ["c"], name="cls0"),
             helper.make_node("Conv", ["level0", "w2"], ["b"], name="box0"),
             helper.make_node("Conv", ["level1", "w3"], ["c1"], name="cls1")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [], [])
    candidates = SimpleNamespace(fp32=helper.make_model(graph))
    assert siblings(candidates, ["cls0", "cls1", "box0"]) == [["cls0", "box0"], ["cls1"]]  # type: ignore[arg-type]
