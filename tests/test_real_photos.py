"""The same commands on an ImageFolder of real photographs (scikit-image's sample photos).

Each class is one photograph; its images are random crops of it at random scales, flips and
JPEG qualities, so classes share colours and textures (sky, skin, fur, black space) and
the crops of a class differ a lot. Nothing here is tuned for edgetl.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgetl.cli import main
from tools.datasets import photos as write_photo_crops


def test_finetune_export_bench_on_real_photos(tmp_path: Path) -> None:
    data = write_photo_crops(tmp_path / "photos")
    run = tmp_path / "run"
    cli = CliRunner()
    result = cli.invoke(
        main,
        [
            "finetune",
            "--data",
            str(data),
            "--out",
            str(run),
            "--image-size",
            "96",
            "--epochs",
            "30",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((run / "edgetl.json").read_text())
    assert meta["data"]["sizes"]["val"] == meta["data"]["sizes"]["test"] == 18  # 20%: 3 x 6
    assert meta["metrics"]["test_top1"] >= 0.9

    result = cli.invoke(main, ["export", str(run), "--target", "cpu"])
    assert result.exit_code == 0, result.output
    parity = json.loads((run / "export" / "cpu-fp32" / "manifest.json").read_text())["parity"]
    assert parity["max_abs_diff"] <= 1e-3 and parity["agreement"] == 1.0

    report_path = tmp_path / "report.json"
    result = cli.invoke(
        main,
        [
            "bench",
            str(run / "export" / "cpu-fp32"),
            "--data",
            str(data),
            "--iterations",
            "10",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report_path.read_text())["results"]
    # The run's own data: the test split by default, which no choice was made on.
    assert entry["accuracy"]["n"] == 18
    assert entry["accuracy"]["top1"] == meta["metrics"]["test_top1"]
