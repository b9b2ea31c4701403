"""The benchmark scripts' one way to run edgetl: `python -m edgetl ARGS` in a fresh process
(as a user would), its output captured, the seconds it took."""

from __future__ import annotations

import subprocess
import sys
import time


def edgetl(*args: object, check: bool = True) -> tuple[subprocess.CompletedProcess[str], float]:
    """The finished command and its wall seconds; with `check`, exit the script on failure
    with the command's last 3,000 characters of stderr."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgetl", *map(str, args)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    if check and result.returncode != 0:
        raise SystemExit(f"edgetl {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result, time.perf_counter() - started
