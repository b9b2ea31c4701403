"""Users' own latency regression tests, written the way the README shows them."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.pytest_plugin import assert_no_regression
from tests.conftest import export_cli


@pytest.fixture(scope="module")
def artifact_and_baseline(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("plugin")
    assert export_cli(tiny_run, root / "cpu-fp32", "--target", "cpu").exit_code == 0
    baseline = root / "baseline.json"
    result = CliRunner().invoke(
        main, ["bench", str(root / "cpu-fp32"), "--iterations", "100", "--json", str(baseline)]
    )
    assert result.exit_code == 0, result.output
    return root / "cpu-fp32", baseline


def test_the_plugin_is_an_installed_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert plugins.get("edgetl") == "edgetl.pytest_plugin"


def test_latency_has_not_regressed(edgetl_bench, artifact_and_baseline) -> None:
    artifact, baseline = artifact_and_baseline
    # The README's three lines, with a threshold far above the noise of a shared CI box
    # (two runs of one artifact there differed by +57%): the plumbing is under test here,
    # the verdict in test_a_regression_fails_with_the_reason.
    assert_no_regression(edgetl_bench(artifact), baseline, max_regression=300)


def test_a_regression_fails_with_the_reason(edgetl_bench, artifact_and_baseline, tmp_path) -> None:
    import json

    artifact, baseline = artifact_and_baseline
    fast = json.loads(baseline.read_text())
    fast["results"][0]["samples_ms"] = [s / 4 for s in fast["results"][0]["samples_ms"]]
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    result = edgetl_bench(artifact, iterations=40)
    assert result.accuracy.n == 12 and len(result.samples_ms) >= 40
    with pytest.raises(AssertionError, match="slower beyond the 5% threshold"):
        assert_no_regression(result, tmp_path / "fast.json")
    with pytest.raises(AssertionError, match="no baseline at"):
        assert_no_regression(result, tmp_path / "missing.json")


@pytest.fixture(scope="module")
def detector_and_baseline(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    from edgetl.core.data.scenes import make_scenes
    from tests.conftest import TINY_BACKBONE

    root = tmp_path_factory.mktemp("plugin-detector")
    data = make_scenes(root / "scenes", sizes={"train": 16, "val": 8, "test": 8})
    runner = CliRunner()
    trained = runner.invoke(main, ["finetune", "--data", str(data), "--out", str(root / "run"),
                                   "--backbone", TINY_BACKBONE, "--weights", str(tiny_weights),
                                   "--image-size", "64", "--epochs", "2"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert export_cli(root / "run", root / "det", "--target", "cpu").exit_code == 0
    baseline = root / "baseline.json"
    benched = runner.invoke(main, ["bench", str(root / "det"), "--iterations", "40", "--json",
                                   str(baseline)])  # fmt: skip
    assert benched.exit_code == 0, benched.output
    return root / "det", baseline


def test_a_detector_is_gated_by_the_same_two_lines(
    edgetl_bench, detector_and_baseline, tmp_path
) -> None:
    """edgetl_bench of a detector gives its entry (mAP, latency with NMS); the baseline gate
    takes a detector bench report; assert_within_budget reads a detector search."""
    import json

    from edgetl.pytest_plugin import assert_within_budget

    artifact, baseline = detector_and_baseline
    result = edgetl_bench(artifact, iterations=20)
    assert result.images == 8 and result.latency.p50 > 0
    assert_no_regression(result, baseline, max_regression=300)
    better = json.loads(baseline.read_text())
    better["results"][0]["map50_95"] += 0.5
    (tmp_path / "better.json").write_text(json.dumps(better))
    with pytest.raises(AssertionError, match="mAP50-95 .* points below the baseline"):
        assert_no_regression(result, tmp_path / "better.json", max_regression=300)
    search = tmp_path / "search"
    search.mkdir()
    state = {"schema": "edgetl.detect-search/1", "budget_ms": 0.001, "latency": "p50",
             "settings": {"latency": "p50", "max_latency_ms": 0.001}}  # fmt: skip
    (search / "search.json").write_text(json.dumps(state))
    with pytest.raises(AssertionError, match="over the search's budget"):
        assert_within_budget(result, search)
    state["budget_ms"] = state["settings"]["max_latency_ms"] = 1e6
    (search / "search.json").write_text(json.dumps(state))
    assert_within_budget(result, search)
