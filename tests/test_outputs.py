"""Nothing a user gives as input is ever deleted or overwritten; names from files stay in their
folder; one writer per output; what killed runs left behind is cleaned up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from tests.conftest import export_cli, write_folder

CPU_PROFILE = Path(__file__).parents[1] / "targets" / "cpu.toml"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run, so a test that fails to protect it harms no other."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


@pytest.mark.parametrize(
    ("out", "relation"),
    [("{run}", "is the run"), ("{run}/..", "contains the run"), ("{run}/x", "lies inside")],
)
def test_export_never_replaces_its_run(run_copy: Path, out: str, relation: str) -> None:
    before = tree(run_copy)
    target = Path(out.format(run=run_copy))
    result = export_cli(run_copy, target, "--target", "cpu", "--force")
    assert result.exit_code == 2, result.output
    assert relation in " ".join(result.output.split())
    assert tree(run_copy) == before


def test_export_never_writes_into_the_runs_data(run_copy: Path, tiny_run: Path) -> None:
    """An artifact inside the run's own dataset broke the next finetune ("class folder has
    no images"): the data joins the inputs --out may not enter."""
    data = tiny_run.parent / "photos"
    before = tree(data)
    for out in (data / "art", data / "class_0" / "art"):
        result = export_cli(run_copy, out, "--target", "cpu")
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and "lies inside the run's data" in text, result.output
    assert tree(data) == before


def test_export_under_run_export_is_allowed(run_copy: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(run_copy), "--target", "cpu"])
    assert result.exit_code == 0, result.output
    assert (run_copy / "export" / "cpu-fp32" / "manifest.json").is_file()


def test_finetune_never_replaces_its_data(tmp_path: Path, tiny_weights: Path) -> None:
    data = write_folder(tmp_path / "photos", per_class=4)
    before = tree(data)
    for out in (data, data / "class_0", tmp_path):
        result = CliRunner().invoke(
            main,
            ["finetune", "--data", str(data), "--out", str(out), "--force"]
            + ["--backbone", "test_efficientnet", "--weights", str(tiny_weights)],
        )
        assert result.exit_code == 2, result.output
        assert "--data" in result.output
    assert tree(data) == before


def test_finetune_force_keeps_what_the_run_did_not_make(
    run_copy: Path, tiny_run: Path, tiny_weights: Path
) -> None:
    """finetune --force replaced RUN/ whole: RUN/export/ (the run's artifacts' default
    home) and the user's NOTES.md went with it, without a word. They are kept, and said."""
    assert export_cli(run_copy, run_copy / "export" / "cpu-fp32", "--target", "cpu").exit_code == 0
    (run_copy / "NOTES.md").write_text("why this run exists")
    artifact = tree(run_copy / "export")
    old_head = (run_copy / "head.safetensors").read_bytes()
    result = CliRunner().invoke(
        main,
        ["finetune", "--data", str(tiny_run.parent / "photos"), "--out", str(run_copy), "--force"]
        + [
            "--backbone",
            "test_efficientnet",
            "--weights",
            str(tiny_weights),
            "--image-size",
            "64",
            "--epochs",
            "2",
            "--seed",
            "7",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert (run_copy / "NOTES.md").read_text() == "why this run exists"
    assert tree(run_copy / "export") == artifact
    assert (run_copy / "head.safetensors").read_bytes() != old_head  # the run was replaced
    text = " ".join(result.output.split())
    assert "kept from the replaced run: NOTES.md, export" in text and "export again" in text


def test_force_replaces_only_edgetls_own_directories(run_copy: Path, tmp_path: Path) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    result = export_cli(run_copy, precious, "--target", "cpu", "--force")
    assert result.exit_code == 2, result.output
    assert "not an edgetl export" in " ".join(result.output.split())
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_a_profile_name_never_leaves_run_export(run_copy: Path, tmp_path: Path) -> None:
    victim = run_copy.parent / "victim-fp32"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    hostile = tmp_path / "hostile.toml"
    hostile.write_text(CPU_PROFILE.read_text().replace('name = "cpu"', 'name = "../../victim"'))
    result = CliRunner().invoke(
        main, ["export", str(run_copy), "--target", str(hostile), "--force"]
    )
    assert result.exit_code == 2, result.output
    assert "not a plain name" in " ".join(result.output.split())
    assert (victim / "keep.txt").read_text() == "keep"


def test_a_recipe_name_must_be_plain(tmp_path: Path) -> None:
    from edgetl.core.errors import EdgetlError
    from edgetl.quantize.recipes import parse_recipe

    with pytest.raises(EdgetlError, match="not a plain name"):
        parse_recipe({"name": "a/b", "engine": "nncf", "method": "minmax"}, "r.toml")


def test_a_class_name_must_not_be_a_path() -> None:
    from edgetl.core.errors import EdgetlError
    from edgetl.core.outputs import check_label

    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(EdgetlError):
            check_label(bad, "class", "manifest.json")
    assert check_label("golden retriever", "class", "m") == "golden retriever"


HOLD = """
import sys, time
from pathlib import Path
from edgetl.core.outputs import claim
with claim(Path(sys.argv[1]), False, "export", "manifest.json"):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_of_the_same_out_exits_2(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "art"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        result = export_cli(run_copy, out, "--target", "cpu")
        assert result.exit_code == 2, result.output
        assert f"pid {holder.pid}" in result.output and "writing" in result.output
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock: the next export goes ahead.
    result = export_cli(run_copy, out, "--target", "cpu")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".art.lock").exists()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_runs_are_removed(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "art"
    partial = tmp_path / f".art.partial-{dead_pid()}-abc"
    partial.mkdir()
    (partial / "model.onnx").write_bytes(b"half")
    scratch = Path(tempfile.gettempdir()) / f"edgetl-export-{dead_pid()}-xyz"
    scratch.mkdir()
    live = Path(tempfile.mkdtemp(prefix="edgetl-export-1-"))  # pid 1 is alive: kept
    try:
        result = export_cli(run_copy, out, "--target", "cpu")
        assert result.exit_code == 0, result.output
        assert not partial.exists() and not scratch.exists() and live.exists()
        text = "".join(result.output.split())  # rich wraps long paths
        assert str(partial) in text and "killed" in text
    finally:
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def test_force_without_archive_removes_the_old_archive(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "art"
    assert export_cli(run_copy, out, "--target", "cpu", "--archive").exit_code == 0
    archive = tmp_path / "art.tar.gz"
    assert archive.is_file()
    result = export_cli(run_copy, out, "--target", "cpu", "--force")
    assert result.exit_code == 0, result.output
    assert not archive.exists()
    assert "removed" in result.output


def test_an_archive_edgetl_did_not_make_of_the_replaced_artifact_is_kept(
    run_copy: Path, tmp_path: Path
) -> None:
    """OUT.tar.gz that is not the archive of the artifact being replaced (the user's own
    file, another model's archive) is neither deleted by an export (it was: "it held the
    artifact this export replaced") nor overwritten by --archive without --force."""
    out = tmp_path / "model"
    mine = tmp_path / "model.tar.gz"
    mine.write_bytes(b"the user's deployment tarball")
    result = export_cli(run_copy, out, "--target", "cpu")
    assert result.exit_code == 0, result.output
    assert mine.read_bytes() == b"the user's deployment tarball" and "removed" not in result.output
    result = export_cli(run_copy, out, "--target", "cpu", "--force")
    assert result.exit_code == 0 and mine.is_file()  # replaced an artifact, not its archive
    fresh = tmp_path / "fresh"
    theirs = tmp_path / "fresh.tar.gz"
    theirs.write_bytes(b"someone else's")
    result = export_cli(run_copy, fresh, "--target", "cpu", "--archive")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "is not an archive of the artifact" in text, result.output
    assert theirs.read_bytes() == b"someone else's" and not fresh.exists()  # before any work
    result = export_cli(run_copy, fresh, "--target", "cpu", "--archive", "--force")
    assert result.exit_code == 0, result.output  # --force: overwritten, as asked
    assert theirs.read_bytes() != b"someone else's"


def test_an_out_name_is_never_a_pattern_and_a_half_swap_is_restored(tmp_path: Path) -> None:
    """--out 'gx/cpu*' removed another export's work in progress (its name was a glob);
    a kill between the two renames of a swap left no artifact, and the next run deleted the
    copy moved aside. Names are matched exactly; the moved-aside copy comes back; staging
    left by dead processes of any output in the folder is swept, live ones are kept."""
    from edgetl.core.outputs import claim

    folder = tmp_path / "gx"
    live = folder / f".cpu-a.partial-{os.getpid()}-x1"  # another export, still running
    dead = folder / f".cpu-b.partial-{dead_pid()}-x2"  # another export, killed
    aside = folder / ".art.old-123"  # killed between "final -> aside" and "staging -> final"
    for path in (live, dead, aside):
        path.mkdir(parents=True)
    (aside / "manifest.json").write_text("{}")
    notes: list[str] = []
    with claim(folder / "cpu*", False, "export", "manifest.json", notes):
        pass
    assert live.is_dir() and not dead.exists()
    with claim(folder / "art", True, "export", "manifest.json", notes):
        pass
    assert (folder / "art" / "manifest.json").is_file() and not aside.exists()
    assert any("restored" in note for note in notes)


def _export_process(run: Path, out: Path, tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TMPDIR": str(tmp)}
    args = [sys.executable, "-m", "edgetl", "export", str(run), "--target", "cpu", "--out",
            str(out)]  # fmt: skip
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stopped_while_staged(run: Path, folder: Path, name: str, tmp: Path) -> subprocess.Popen[bytes]:
    """An export to `folder/name` frozen (SIGSTOP) while its staging folder exists. The
    export finishes about 1 s after it stages: a test that signalled it on seeing the
    staging raced it, and lost on a loaded machine (exit 0, the artifact written). Frozen,
    it cannot finish; if it had finished before the freeze, another export is started."""
    import signal
    import time

    for attempt in range(5):
        process = _export_process(run, folder / f"{name}{attempt or ''}", tmp)
        staging = f".{name}{attempt or ''}.partial-*"
        deadline = time.monotonic() + 120
        while not list(folder.glob(staging)) and process.poll() is None:
            assert time.monotonic() < deadline, "the export never staged anything"
            time.sleep(0.02)
        if process.poll() not in {None, 0}:
            raise AssertionError(process.stderr.read() if process.stderr else "export failed")
        process.send_signal(signal.SIGSTOP)
        while process.poll() is None and _state(process.pid) not in {"T", "Z"}:
            time.sleep(0.01)
        if process.poll() is None and _state(process.pid) == "T" and list(folder.glob(staging)):
            return process
        process.send_signal(signal.SIGCONT)
        process.wait(timeout=120)
        shutil.rmtree(folder / f"{name}{attempt or ''}", ignore_errors=True)
    raise AssertionError("every export finished before it could be frozen while staged")


def _state(pid: int) -> str:
    """A process's state letter from /proc (T: stopped, Z: exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"


def test_sigterm_cleans_up_and_sigkill_leftovers_go_with_the_next_run(
    run_copy: Path, tmp_path: Path
) -> None:
    """CI's cancel (SIGTERM) left .partial-* dirs, edgetl-export-* (~26 MB) in the system's
    temp dir and .lock files. SIGTERM now cleans up as Ctrl-C does; what SIGKILL leaves
    (staging, scratch, lock: all beside the output) goes with the next run in that folder,
    whatever its --out."""
    import signal

    folder, temp = tmp_path / "deploy", tmp_path / "tmp"
    folder.mkdir()
    temp.mkdir()
    process = _stopped_while_staged(run_copy, folder, "a", temp)
    process.send_signal(signal.SIGTERM)  # handled when it runs again
    process.send_signal(signal.SIGCONT)
    assert process.wait(timeout=120) != 0
    assert sorted(p.name for p in folder.iterdir()) == []  # no staging, scratch, lock
    assert list(temp.iterdir()) == []
    process = _stopped_while_staged(run_copy, folder, "b", temp)
    process.kill()
    process.wait(timeout=60)
    left = sorted(p.name for p in folder.iterdir())
    assert any(".partial-" in name for name in left)
    assert any(name.startswith(".b") and name.endswith(".lock") for name in left)
    assert list(temp.iterdir()) == []  # scratch is beside the output now
    result = export_cli(run_copy, folder / "c", "--target", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["c"]


def test_a_crashed_runs_empty_folder_needs_no_force_to_retry(tmp_path: Path) -> None:
    """A quickstart that crashed left `edgetl-quickstart/` holding only its lock and staging
    (or nothing), and a plain retry refused "already exists; pass --force". Nothing anyone
    finished is there: it is not an output. A folder with anything else still needs it."""
    from edgetl.core.errors import EdgetlError
    from edgetl.core.outputs import check_replaceable

    crashed = tmp_path / "edgetl-quickstart"
    (crashed / f".run.partial-{dead_pid()}-x1").mkdir(parents=True)
    (crashed / ".run.lock").write_text("pid 1")
    check_replaceable(crashed, False, "quickstart directory", None)
    (crashed / "run").mkdir()
    with pytest.raises(EdgetlError, match="already exists; pass --force"):
        check_replaceable(crashed, False, "quickstart directory", None)
