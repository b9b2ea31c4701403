"""Input at fault is exit 2 naming the file, before the long work: never exit 3 ("a bug")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from tests.conftest import export_cli, write_folder

EDGETL = str(Path(sys.executable).parent / "edgetl")
CPU_PROFILE = Path(__file__).parents[1] / "targets" / "cpu.toml"


def read_only_runner(tmp_path: Path):
    """Runs `edgetl ARGS` with tmp_path/ro read-only: chmod for a normal user; for root (who
    ignores permissions, as in CI) a read-only tmpfs mounted there in a private namespace."""
    ro = tmp_path / "ro"
    ro.mkdir()
    prefix: list[str] = []
    if os.geteuid() != 0:
        ro.chmod(0o555)
    else:
        unshare = shutil.which("unshare")
        mount = f'mount -t tmpfs -o ro tmpfs "{ro}"'
        if unshare is None or subprocess.run([unshare, "-m", "sh", "-c", mount]).returncode:
            pytest.skip("root here, and no mount namespace for a read-only directory")
        prefix = [unshare, "-m", "sh", "-c", f'{mount} && exec "$@"', "sh"]

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, EDGETL, *args], capture_output=True, text=True, timeout=300,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    return ro, run


def test_read_only_places_are_exit_2_before_the_work(tiny_run: Path, tmp_path: Path) -> None:
    art = tmp_path / "art"
    assert export_cli(tiny_run, art, "--target", "openvino-cpu").exit_code == 0
    image = str(next(tiny_run.parent.rglob("*.png")))
    ro, run = read_only_runner(tmp_path)
    cases = [
        (["finetune", "--data", "digits", "--out", f"{ro}/run"], {}, "--out"),
        (["finetune", "--data", "digits", "--out", f"{tmp_path}/r", "--cache-dir", f"{ro}/c"],
         {}, "--cache-dir"),
        (["bench", str(art), "--json", f"{ro}/report.json"], {}, "--json"),
        (["export", str(tiny_run), "--target", "cpu", "--out", f"{ro}/a"], {}, "--out"),
        (["predict", str(art), image], {"EDGETL_OPENVINO_CACHE": f"{ro}/ov"},
         "OpenVINO model cache"),
    ]  # fmt: skip
    for args, env, option in cases:
        result = run(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        text = " ".join(result.stderr.split())
        assert option in text and "cannot write" in text, text


def test_an_output_under_a_file_is_exit_2(tiny_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = export_cli(tiny_run, blocker / "art", "--target", "cpu")
    assert result.exit_code == 2 and "is a file, not a directory" in result.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("opset = 17", 'opset = "seventeen"'), "wrong type"),
        (lambda t: t.replace('precisions = ["fp32", "int8"]', 'precisions = "fp32"'),
         "precisions must be a list"),
        (lambda t: t.replace("[parity]", "[parity]\nfp16 = 3"), "wrong type"),
        (lambda t: t.replace("threads = 0", "threads = [1]"), "wrong type"),
    ],
)  # fmt: skip
def test_a_target_with_wrong_types_is_exit_2(
    tiny_run: Path, tmp_path: Path, change, message: str
) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text(change(CPU_PROFILE.read_text()))
    result = export_cli(tiny_run, tmp_path / "out", "--target", str(profile))
    assert result.exit_code == 2, result.output
    assert "bad.toml" in result.output and message in " ".join(result.output.split())


def test_an_alias_to_itself_is_exit_2(tiny_run: Path, tmp_path: Path) -> None:
    loop = tmp_path / "loop.toml"
    loop.write_text(f'alias = "{loop}"\n')
    result = export_cli(tiny_run, tmp_path / "out", "--target", str(loop))
    assert result.exit_code == 2, result.output
    assert "refers back to itself" in " ".join(result.output.split())
    other = tmp_path / "a.toml"
    other.write_text(f'alias = "{tmp_path / "b.toml"}"\n')
    (tmp_path / "b.toml").write_text(f'alias = "{other}"\n')
    result = export_cli(tiny_run, tmp_path / "out", "--target", str(other))
    assert result.exit_code == 2 and "refers back to itself" in " ".join(result.output.split())


def test_a_report_path_over_the_baseline_is_exit_2(tiny_run: Path, tmp_path: Path) -> None:
    art = tmp_path / "art"
    assert export_cli(tiny_run, art, "--target", "cpu").exit_code == 0
    base = tmp_path / "base.json"
    args = ["bench", str(art), "--iterations", "20", "--no-cold"]
    assert CliRunner().invoke(main, [*args, "--json", str(base)]).exit_code == 0
    before = base.read_bytes()
    result = CliRunner().invoke(main, [*args, "--baseline", str(base), "--json", str(base)])
    assert result.exit_code == 2 and "--json" in result.output
    assert base.read_bytes() == before
    inside = CliRunner().invoke(main, [*args, "--json", str(art / "report.json")])
    assert inside.exit_code == 0, inside.output  # beside the model files, as on a device
    # ... but never onto one of them: the manifest, a listed file, the signature's place.
    files = {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()}
    for option, name in (("--md", "model.onnx"), ("--json", "manifest.json"),
                         ("--junit", "reference.npz"), ("--json", "signature.json")):  # fmt: skip
        result = CliRunner().invoke(main, [*args, option, str(art / ".." / art.name / name)])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and f"is {name} of the artifact" in text, result.output
    assert {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()} == files


def test_bench_runs_from_a_directory_holding_an_edgetl_folder(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cold-start child ran `python -m edgetl.stages.bench.cold`, which puts the current
    directory first on sys.path: an empty `edgetl/` there (a clone's parent) broke bench."""
    art = tmp_path / "art"
    assert export_cli(tiny_run, art, "--target", "cpu").exit_code == 0
    shadow = tmp_path / "work"
    (shadow / "edgetl" / "bench").mkdir(parents=True)
    (shadow / "edgetl" / "__init__.py").write_text("raise ImportError('the shadow package')\n")
    monkeypatch.chdir(shadow)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        main, ["bench", str(art), "--iterations", "3", "--rounds", "1", "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    import json

    (entry,) = json.loads(report.read_text())["results"]
    assert entry["load_s"] > 0 and entry["peak_rss_mb"] > 0


def test_a_file_name_that_is_not_utf8_is_exit_2_naming_it(
    tiny_run: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    """Such a name (a Latin-1 camera card, a Windows share) was exit 3 "internal error" in
    finetune, `bench --data` and `bench --on --data` (hashing it); now exit 2 naming it."""
    import os
    import shutil

    from edgetl.core.errors import EdgetlError
    from edgetl.stages.lab.remote import folder_digest

    data = write_folder(tmp_path / "photos", per_class=4)
    sample = next((data / "class_0").glob("*.jpg"))
    shutil.copyfile(sample, data / "class_0" / os.fsdecode(b"caf\xe9.jpg"))
    result = CliRunner().invoke(
        main,
        ["finetune", "--data", str(data), "--out", str(tmp_path / "run"), "--image-size", "64"]
        + ["--backbone", "test_efficientnet", "--weights", str(tiny_weights)],
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "caf\\xe9.jpg: its name is not valid UTF-8" in text, text
    art = tmp_path / "art"
    assert export_cli(tiny_run, art, "--target", "cpu").exit_code == 0
    result = CliRunner().invoke(main, ["bench", str(art), "--data", str(data), "--iterations",
                                       "3", "--rounds", "1", "--no-cold"])  # fmt: skip
    assert result.exit_code == 2 and "not valid UTF-8" in result.output, result.output
    with pytest.raises(EdgetlError, match="not valid UTF-8"):  # what bench --on copies
        folder_digest(data)


def test_a_run_given_as_an_artifact_says_so_and_lists_its_artifacts(
    tiny_run: Path, tmp_path: Path
) -> None:
    """`predict RUN` answered "no manifest.json here"; it says RUN is a run, and where its
    artifacts are (or how to make one)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    image = next((tiny_run.parent / "photos" / "class_1").glob("*.jpg"))
    result = CliRunner().invoke(main, ["predict", str(run), str(image)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "is a fine-tuning run, not an artifact" in text
    assert f"edgetl export {run} --target" in text
    assert export_cli(run, run / "export" / "cpu-fp32", "--target", "cpu").exit_code == 0
    result = CliRunner().invoke(main, ["bench", str(run)])
    text = "".join(result.output.split())  # rich wraps long paths
    assert result.exit_code == 2 and f"itsartifacts:{run}/export/cpu-fp32" in text
