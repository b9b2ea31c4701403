"""How good is the regression gate? False alarms and detections of `edgetl compare`.

On one artifact (default: digits + efficientnet_lite0 at 128 px, FP32, ONNX Runtime; or
--artifact DIR): 20 comparisons of the artifact against itself (a false alarm is a
regression declared; target: at most 1) and 20 against a copy made 20% slower (a runner
wrapper that busy-waits a fixed fraction of its own measured time; target: at least 19
detected). Prints both counts, the ratios and the time each comparison took. One runtime
thread by default: on shared machines that is what keeps the intervals narrow.

    python tools/bench_gate.py [--artifact DIR] [--comparisons 20] [--slowdown 0.2]
        [--max-regression 5] [--rounds 10] [--iterations 30] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgetl.backends import Runner, get_backend
from edgetl.bench.compare import compare_runners
from edgetl.formats import Manifest
from edgetl.reference import ReferenceSet
from edgetl.ui import make_console, stdout_console, table


class Slowed:
    """A runner that takes `fraction` longer than the one it wraps (busy-wait: sleep is too
    coarse below a millisecond)."""

    def __init__(self, runner: Runner, fraction: float):
        self.runner, self.fraction = runner, fraction
        self.batch_size = runner.batch_size

    def run(self, images: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = self.runner.run(images)
        until = time.perf_counter() + (time.perf_counter() - started) * self.fraction
        while time.perf_counter() < until:
            pass
        return out


def build_artifact(work: Path) -> Path:
    from edgetl.export import ExportOptions, export
    from edgetl.finetune import FinetuneOptions, finetune

    console = make_console()
    finetune(FinetuneOptions(data="digits", out=work / "run", image_size=128), console)
    export(ExportOptions(run=work / "run", target="cpu", out=work / "cpu-fp32"), console)
    return work / "cpu-fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--comparisons", type=int, default=20)
    parser.add_argument("--slowdown", type=float, default=0.2)
    parser.add_argument("--max-regression", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=30)
    # One thread per inference: on a shared 2-core machine an all-core inference stalls at
    # every steal, and the intervals widen from about +-4% to +-30% (measured).
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgetl-gate-") as scratch:
        artifact = args.artifact or build_artifact(Path(scratch))
        manifest = Manifest.read(artifact)
        backend = get_backend(manifest.backend)
        spec = manifest.runtime_spec(args.threads)
        single = manifest.preprocess.normalize(
            ReferenceSet.load(artifact / manifest.reference.file).images[:1]
        )

        def load() -> Runner:
            return backend.load(artifact, spec)

        def load_slow() -> Runner:
            return Slowed(backend.load(artifact, spec), args.slowdown)

        rows, counts = [], {"same": 0, "slower": 0}
        for kind, candidate in (("same", load), ("slower", load_slow)):
            for index in range(args.comparisons):
                started = time.perf_counter()
                verdict = compare_runners(
                    load, candidate, single, args.rounds, args.iterations, 5, args.max_regression
                )
                seconds = time.perf_counter() - started
                counts[kind] += verdict.regressed
                rows.append(
                    [
                        kind,
                        str(index + 1),
                        f"{verdict.ratio:.3f}",
                        f"{verdict.low:.3f}..{verdict.high:.3f}",
                        "REGRESSION" if verdict.regressed else "ok",
                        f"{seconds:.1f}",
                    ]
                )
    out = stdout_console()
    out.print(
        table(
            f"edgetl compare on {manifest.name} ({args.rounds} rounds x {args.iterations} runs, "
            f"threads {spec.threads or 'auto'}, threshold {args.max_regression:g}%)",
            ["candidate", "#", "ratio", "95% CI", "verdict", "s"],
            rows,
        )
    )
    seconds = [float(row[-1]) for row in rows]
    n = args.comparisons
    out.print(
        f"false alarms (artifact vs itself): {counts['same']} of {n} (target <= 1)\n"
        f"detections ({args.slowdown:.0%} slower copy): {counts['slower']} of {n} "
        f"(target >= {n - 1})\n"
        f"time per comparison: median {np.median(seconds):.1f} s, max {max(seconds):.1f} s"
    )


if __name__ == "__main__":
    main()
