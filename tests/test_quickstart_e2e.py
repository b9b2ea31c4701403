"""End to end on the real offline default: digits + efficientnet_lite0 -> cpu fp32 -> bench."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgetl.artifacts import load_manifest
from edgetl.cli import main


def test_quickstart_on_digits_with_efficientnet_lite0(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = CliRunner().invoke(main, ["quickstart", "--out", str(out), "--iterations", "30"])
    assert result.exit_code == 0, result.output

    run = json.loads((out / "run" / "edgetl.json").read_text())
    assert run["backbone"]["name"] == "efficientnet_lite0"
    assert run["metrics"]["val_top1"] >= 0.95

    manifest = load_manifest(out / "run" / "export" / "cpu-fp32")
    assert manifest["parity"]["max_abs_diff"] <= 1e-3
    assert manifest["parity"]["agreement"] == 1.0

    report = json.loads((out / "report.json").read_text())
    (entry,) = report["results"]
    assert entry["accuracy"]["n"] == run["data"]["val"]
    assert entry["accuracy"]["top1"] >= 0.95
    assert entry["accuracy"]["agreement"] == 1.0
    assert "cpu-fp32" in result.output  # the final table

    again = CliRunner().invoke(main, ["quickstart", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
