"""Typed files: a file from another version or with a missing key is exit 2 naming the file,
the key and the version that wrote it; reports round-trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.core.errors import EdgetlError
from edgetl.core.records import BenchReport, Manifest, RunInfo
from tests.conftest import export_cli


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_run_from_another_version_exits_2_naming_it(run_copy: Path, tmp_path: Path) -> None:
    edit_json(run_copy / "edgetl.json", lambda d: d.update(schema="edgetl.run/1", edgetl="0.0.9"))
    result = export_cli(run_copy, tmp_path / "out", "--target", "cpu")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "edgetl.json: written by edgetl 0.0.9, schema edgetl.run/1" in text
    assert "reads edgetl.run/3" in text and "finetune" in text


def test_run_with_a_missing_key_names_the_key(run_copy: Path, tmp_path: Path) -> None:
    edit_json(run_copy / "edgetl.json", lambda d: d["data"].pop("fingerprint"))
    result = export_cli(run_copy, tmp_path / "out", "--target", "cpu")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "missing key 'data.fingerprint' (written by edgetl 0.1.0, schema edgetl.run/3)" in text


def test_run_info_round_trips(tiny_run: Path) -> None:
    info = RunInfo.read(tiny_run)
    assert RunInfo.from_dict(info.to_dict(), "x") == info


def test_manifest_missing_key_and_round_trip(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "art"
    assert export_cli(tiny_run, out, "--target", "cpu").exit_code == 0
    manifest = Manifest.read(out)
    assert Manifest.from_dict(manifest.to_dict(), "x") == manifest
    edit_json(out / "manifest.json", lambda d: d["reference"].pop("n"))
    with pytest.raises(EdgetlError, match="missing key 'reference.n'"):
        Manifest.read(out)
    result = CliRunner().invoke(main, ["bench", str(out)])
    assert result.exit_code == 2 and "reference.n" in result.output


def test_bench_report_round_trips(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "art"
    assert export_cli(tiny_run, out, "--target", "cpu").exit_code == 0
    path = tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            str(out),
            "--iterations",
            "3",
            "--rounds",
            "3",
            "--warmup",
            "0",
            "--json",
            str(path),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    report = BenchReport.read(path)
    assert report.results[0].iterations == 3 and len(report.results[0].samples_ms) == 3
    assert report.to_dict() == json.loads(path.read_text())
    edit_json(path, lambda d: d.update(schema="edgetl.bench/0"))
    with pytest.raises(EdgetlError, match="schema edgetl.bench/0"):
        BenchReport.read(path)


def test_a_manifest_of_the_previous_schema_is_still_read(tiny_run: Path, tmp_path: Path) -> None:
    """manifest/3 kept the test numbers twice (accuracy.test and quantization.test); /4 keeps
    them once. An artifact exported by the previous version still loads, verified."""
    from edgetl.core.artifact.integrity import DIGEST_KEY, digest

    out = tmp_path / "art"
    assert export_cli(tiny_run, out, "--target", "cpu").exit_code == 0
    current = Manifest.read(out)

    def to_v3(data: dict) -> None:
        data["schema"] = "edgetl.manifest/3"
        test = data["accuracy"]["test"]
        del test["drop_pts"], test["agreement"]
        data[DIGEST_KEY] = ""
        data[DIGEST_KEY] = digest(data)

    edit_json(out / "manifest.json", to_v3)
    old = Manifest.read(out)
    assert (
        old.schema == "edgetl.manifest/3" and old.accuracy.test.top1 == current.accuracy.test.top1
    )
    assert old.accuracy.test.drop_pts is None
    result = CliRunner().invoke(main, ["bench", str(out), "--iterations", "5"])
    assert result.exit_code == 0, result.output
