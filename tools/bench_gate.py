"""How good is the regression gate? False alarms and detections of `edgetl compare`.

On one artifact (default: digits + efficientnet_lite0 at 128 px, FP32, ONNX Runtime; or
--artifact DIR): 20 comparisons of the artifact against itself (a false alarm is a
regression declared; target: at most 1) and 20 against a copy made 20% slower (a runner
wrapper that busy-waits a fixed fraction of its own measured time; target: at least 19
detected). Then the honesty check: `--pairs` times compare(A, slow A) and compare(slow A, A)
back to back; their ratios should be reciprocals (product 1.0), and the interval of each
should hold the reciprocal of the other's estimate. Prints the counts, the ratios, the
products, the warnings and the time each comparison took. One runtime thread by default.

`--hog N` runs N busy-looping processes beside it the whole time (a busy CI runner).

    python tools/bench_gate.py [--artifact DIR] [--comparisons 20] [--pairs 10] [--hog 1]
        [--slowdown 0.2] [--max-regression 5] [--rounds 10] [--iterations 30] [--threads N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends import Runner, get_runtime
from edgetl.core.artifact.reference import ReferenceSet
from edgetl.core.events import install  # noqa: E402
from edgetl.core.records import Manifest
from edgetl.core.ui import make_console, stdout_console, table
from edgetl.stages.bench.compare import compare_runners


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


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """`count` processes spinning on a core each, for as long as the block runs."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def build_artifact(work: Path) -> Path:
    from edgetl.stages.export import ExportOptions, export
    from edgetl.stages.finetune import FinetuneOptions, finetune

    install(make_console())
    finetune(FinetuneOptions(data="digits", out=work / "run", image_size=128))
    export(ExportOptions(run=work / "run", target="cpu", out=work / "cpu-fp32")).checked()
    return work / "cpu-fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--comparisons", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--hog", type=int, default=0, help="busy processes beside the gate")
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
        backend = get_runtime(manifest.backend)
        spec = manifest.runtime_spec(args.threads)
        single = manifest.preprocess.normalize(
            ReferenceSet.load(artifact / manifest.reference.file).images[:1]
        )

        def load() -> Runner:
            return backend.load(artifact, spec)

        def load_slow() -> Runner:
            return Slowed(backend.load(artifact, spec), args.slowdown)

        def one(base: Callable[[], Runner], candidate: Callable[[], Runner]) -> tuple[Any, float]:
            started = time.perf_counter()
            verdict = compare_runners(
                base, candidate, single, args.rounds, args.iterations, 5, args.max_regression
            )
            return verdict, time.perf_counter() - started

        rows, counts, warned = [], {"same": 0, "slower": 0}, 0
        products, held = [], 0
        with cpu_hogs(args.hog):
            for kind, candidate in (("same", load), ("slower", load_slow)):
                for index in range(args.comparisons):
                    verdict, seconds = one(load, candidate)
                    counts[kind] += verdict.regressed
                    warned += bool(verdict.warning)
                    rows.append(row(kind, index, verdict, seconds))
            for index in range(args.pairs):
                forward, s1 = one(load, load_slow)
                backward, s2 = one(load_slow, load)
                products.append(forward.ratio * backward.ratio)
                held += forward.low <= 1 / backward.ratio <= forward.high
                held += backward.low <= 1 / forward.ratio <= backward.high
                warned += bool(forward.warning) + bool(backward.warning)
                rows.append(row("A/B", index, forward, s1))
                rows.append(row("B/A", index, backward, s2))
    out = stdout_console()
    out.print(
        table(
            f"edgetl compare on {manifest.name} ({args.rounds} rounds x {args.iterations} runs, "
            f"threads {spec.threads or 'auto'}, threshold {args.max_regression:g}%, "
            f"{args.hog} CPU hog(s) beside it)",
            ["candidate", "#", "ratio", "95% CI", "verdict", "warning", "s"],
            rows,
        )
    )
    seconds = [float(r[-1]) for r in rows]
    n = args.comparisons
    lines = [
        f"false alarms (artifact vs itself): {counts['same']} of {n} (target <= 1)",
        f"detections ({args.slowdown:.0%} slower copy): {counts['slower']} of {n} "
        f"(target >= {n - 1})",
    ]
    if products:
        lines.append(
            f"A/B x B/A products (1.0 when honest): median {np.median(products):.3f}, range "
            f"{min(products):.3f}..{max(products):.3f}; an interval held the other order's "
            f"reciprocal {held} of {2 * len(products)} times"
        )
    lines.append(f"comparisons with a warning: {warned} of {len(rows)}")
    lines.append(
        f"time per comparison: median {np.median(seconds):.1f} s, max {max(seconds):.1f} s"
    )
    out.print("\n".join(lines))


def row(kind: str, index: int, verdict: Any, seconds: float) -> list[str]:
    return [
        kind,
        str(index + 1),
        f"{verdict.ratio:.3f}",
        f"{verdict.low:.3f}..{verdict.high:.3f}",
        "REGRESSION" if verdict.regressed else verdict.verdict().split(":")[0],
        "order" if "order" in verdict.warning else ("rounds" if verdict.warning else ""),
        f"{seconds:.1f}",
    ]


if __name__ == "__main__":
    main()
