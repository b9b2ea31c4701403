"""Cold start in a fresh process: load time, first inference and the peak memory of a process
that loaded only the model (not edgetl's dataset, torch or other artifacts).

    python -m edgetl.stages.bench.cold ARTIFACT THREADS   ->  one JSON object on stdout
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError


def peak_rss_mb() -> float:
    """This process's peak resident memory.

    VmHWM belongs to the address space, which exec replaces; ru_maxrss would not do: Linux
    carries it across exec, so a child started from a 2 GB parent would report 2 GB.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def probe(artifact: Path, threads: int | None) -> dict[str, Any]:
    import numpy as np

    from edgetl.backends.artifact import load

    before = peak_rss_mb()
    model = load(artifact, threads)
    shape = [1 if d is None else int(d) for d in model.manifest.input_shape]
    started = time.perf_counter()
    model.runner.run(np.zeros(shape, np.float32))
    first_ms = (time.perf_counter() - started) * 1000
    return {
        "load_s": round(model.load_s, 4),
        "first_inference_ms": round(first_ms, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_load_mb": round(before, 1),
    }


# `python -m` puts the current directory first on sys.path, so a folder named `edgetl` there
# (e.g. the parent of a clone) shadowed the package. The child drops that entry first.
CHILD = (
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    "import runpy; runpy.run_module('edgetl.stages.bench.cold', run_name='__main__')"
)


def cold_start(artifact: Path, threads: int | None) -> dict[str, Any]:
    """Run `probe` in a fresh interpreter and return what it measured."""
    command = [sys.executable, "-c", CHILD, str(artifact.resolve()), str(threads or 0)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise EdgetlError(
            f"{artifact}: the cold-start process failed ({result.stderr.strip()[-300:]})"
        )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    artifact, threads = Path(sys.argv[-2]), int(sys.argv[-1])
    print(json.dumps(probe(artifact, threads or None)))
