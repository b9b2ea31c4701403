"""The device lab's overhead: `edgetl bench ART --on DEVICE` against a local `edgetl bench
ART` of the same artifact, side by side in one run (the copy is made once, before timing).

Goal (issue 17): a remote bench's wall time exceeds the local one's by under 2 s + 5% of
the bench time. Both are whole commands (process start included), interleaved
(local, remote, remote, local, ...) so drift on a shared machine hits both.

    python tools/bench_lab.py ARTIFACT --on DEVICE [--lab devices.toml] [--repeats 5]
    python tools/bench_lab.py ARTIFACT --local-sshd     # this machine through a real sshd

--local-sshd starts Debian's sshd on 127.0.0.1 (tests/sshd.py) and a lab whose device is this
machine, with edgetl's device side in a venv of its own made on first use (untimed), as the
tests do.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/sshd.py

from edgetl.core.ui import stdout_console, table  # noqa: E402


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def local_lab(folder: Path) -> Path:
    from tests.sshd import find_sshd, start

    sshd = find_sshd()
    if sshd is None:
        raise SystemExit("--local-sshd: no sshd here (apt-get install openssh-server)")
    server = start(folder / "sshd", sshd)
    lab = folder / "devices.toml"
    lab.write_text(
        f'ssh_config = "{server.client_config}"\n[devices.local]\nssh = "lab-local"\n'
        f'target = "cpu"\nbase_python = "{sys._base_executable}"\n'
        f'workdir = "{folder / "device"}"\n'
    )
    return lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--on", default="local")
    parser.add_argument("--lab", type=Path, default=None)
    parser.add_argument("--local-sshd", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lab = local_lab(Path(tmp)) if args.local_sshd else args.lab
        bench = ["-m", "edgetl", "bench", str(args.artifact), "--no-cold",
                 "--iterations", str(args.iterations)]  # fmt: skip
        remote = [sys.executable, *bench, "--on", args.on, *(["--lab", str(lab)] if lab else [])]
        timed(remote)  # the copy (and an install) happen here, untimed
        # Locally: with --local-sshd the device's own venv (what a user on the device runs;
        # it has no torch to import), else this interpreter.
        device_python = Path(tmp) / "device/venv/bin/python"
        bench = [str(device_python if args.local_sshd else sys.executable), *bench]
        times: dict[str, list[float]] = {"local": [], "remote": []}
        for index in range(args.repeats):
            order = ("local", "remote") if index % 2 == 0 else ("remote", "local")
            for name in order:
                times[name].append(timed(bench if name == "local" else remote))
    local, there = statistics.median(times["local"]), statistics.median(times["remote"])
    overhead, goal = there - local, 2.0 + 0.05 * local
    rows = [
        ["local `edgetl bench`", f"{local:.2f}", "1.00x", ""],
        [f"`edgetl bench --on {args.on}` (copy skipped)", f"{there:.2f}", f"{there / local:.2f}x",
         ""],
        ["overhead (remote - local)", f"{overhead:.2f}", "",
         f"goal < {goal:.2f} s: {'met' if overhead < goal else 'NOT met'}"],
    ]  # fmt: skip
    title = f"median of {args.repeats} interleaved runs, {args.iterations} iterations each"
    stdout_console().print(table(title, ["", "seconds", "x local", ""], rows))


if __name__ == "__main__":
    main()
