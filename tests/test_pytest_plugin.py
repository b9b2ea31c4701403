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
