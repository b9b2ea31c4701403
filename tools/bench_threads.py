"""Thread-safe OpenVINO calls, three ways, side by side in one run: an infer request per
thread (what edgetl's runner does), one request behind a lock, and OpenVINO's AsyncInferQueue.

    python tools/bench_threads.py ARTIFACT [--threads 8] [--calls 400] [--repeats 3]

ARTIFACT is an openvino-* artifact (`edgetl export RUN --target openvino-cpu`). Prints
images/s of each way with THREADS client threads, and as a ratio to the per-thread
requests, measured in alternating order `--repeats` times (the median is printed). Every
answer is checked against a serial run of the same images.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends.artifact import load
from edgetl.core.ui import stdout_console, table

Call = Callable[[np.ndarray], np.ndarray]


def per_thread(compiled: Any) -> Call:
    local = threading.local()

    def call(x: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data, copy=True)

    return call


def locked(compiled: Any) -> Call:
    request, lock = compiled.create_infer_request(), threading.Lock()

    def call(x: np.ndarray) -> np.ndarray:
        with lock:
            request.infer({0: x})
            return np.array(request.get_output_tensor(0).data, copy=True)

    return call


def async_queue(compiled: Any, jobs: int) -> Call:
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled, jobs)

    def finished(request: Any, box: dict[str, Any]) -> None:
        box["out"] = np.array(request.get_output_tensor(0).data, copy=True)
        box["done"].set()

    queue.set_callback(finished)  # once: each job carries its own box as userdata
    lock = threading.Lock()  # start_async hands out idle requests; not safe from threads

    def call(x: np.ndarray) -> np.ndarray:
        box: dict[str, Any] = {"done": threading.Event()}
        with lock:
            queue.start_async({0: x}, box)
        box["done"].wait()
        return np.asarray(box["out"])

    return call


def throughput(call: Call, inputs: list[np.ndarray], threads: int) -> tuple[float, list[Any]]:
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        outputs = list(pool.map(call, inputs))
    return len(inputs) / (time.perf_counter() - started), outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = load(args.artifact)
    compiled = model.runner.compiled  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    size = model.preprocess.size
    inputs = [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(args.calls)]
    serial = [model.runner.run(x) for x in inputs]
    ways = {
        "request per thread (edgetl)": per_thread(compiled),
        "one request + lock": locked(compiled),
        f"AsyncInferQueue({args.threads})": async_queue(compiled, args.threads),
    }
    found: dict[str, list[float]] = {name: [] for name in ways}
    for repeat in range(args.repeats):
        order = list(ways) if repeat % 2 == 0 else list(ways)[::-1]
        for name in order:
            ips, outputs = throughput(ways[name], inputs, args.threads)
            wrong = sum(
                not np.allclose(a, b, atol=1e-5) for a, b in zip(outputs, serial, strict=True)
            )
            if wrong:
                raise SystemExit(f"{name}: {wrong} of {len(inputs)} answers differ from serial")
            found[name].append(ips)
    first = float(np.median(found[next(iter(ways))]))
    rows = [
        [name, f"{np.median(v):.0f}", f"{np.median(v) / first:.2f}x"] for name, v in found.items()
    ]
    stdout_console().print(
        table(
            f"{args.artifact.name}: {args.threads} threads, {args.calls} calls, "
            f"median of {args.repeats} (all answers equal to serial)",
            ["way", "img/s", "vs per-thread"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
