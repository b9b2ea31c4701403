"""`edgetl bench`: load each artifact with its own runtime, measure accuracy and latency."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from edgetl.artifacts import atomic_write_json, load_manifest
from edgetl.backends import get_backend
from edgetl.backends.base import run_all
from edgetl.bench.accuracy import accuracy_report
from edgetl.bench.env import capture
from edgetl.bench.timing import measure, summarize
from edgetl.data import Preprocess, validation_arrays
from edgetl.errors import EdgetlError
from edgetl.ui import table
from edgetl.versions import versions

BENCH_SCHEMA = "edgetl.bench/1"


@dataclass
class BenchOptions:
    artifacts: list[Path]
    data: str
    iterations: int = 200
    warmup: int = 20
    threads: int | None = None
    limit: int | None = None
    json_path: Path | None = None


def bench(opts: BenchOptions, console: Console) -> dict[str, Any]:
    if opts.iterations < 1 or opts.warmup < 0:
        raise EdgetlError("--iterations must be >= 1 and --warmup >= 0")
    entries = [bench_one(path, opts, console) for path in opts.artifacts]
    report = {
        "schema": BENCH_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": opts.data,
        "command": sys.argv,
        "results": entries,
    }
    if opts.json_path:
        atomic_write_json(opts.json_path, report)
    return report


def bench_one(path: Path, opts: BenchOptions, console: Console) -> dict[str, Any]:
    manifest = load_manifest(path)
    backend = get_backend(manifest["backend"])
    if not backend.available():
        raise EdgetlError(f"{path}: runtime {manifest['backend']} is not installed here")
    preprocess = Preprocess.from_dict(manifest["preprocess"])
    run_data = manifest["run"]["data"]
    images, labels = validation_arrays(
        opts.data,
        run_data["val_fraction"],
        run_data["seed"],
        manifest["classes"],
        preprocess,
        opts.limit,
    )
    threads = opts.threads if opts.threads is not None else _profile_threads(manifest)
    console.print(f"bench {path.name}: {len(images)} val images, {manifest['backend']}")

    started = time.perf_counter()
    runner = backend.load(path, manifest, threads)
    load_s = time.perf_counter() - started
    single = images[:1]
    first_ms = measure(lambda: runner.run(single), 1, 0)[0]
    latency = summarize(measure(lambda: runner.run(single), opts.iterations, opts.warmup))
    logits = run_all(runner, images)
    reference = reference_logits(manifest, images)
    size = sum(manifest["files"][name]["bytes"] for name in manifest["model_files"])
    return {
        "artifact": str(path),
        "name": f"{manifest['target']}-{manifest['precision']}",
        "target": manifest["target"],
        "backend": manifest["backend"],
        "precision": manifest["precision"],
        "accuracy": accuracy_report(logits, labels, reference),
        "latency_ms": latency.to_dict(),
        "iterations": opts.iterations,
        "warmup": opts.warmup,
        "batch_size": 1,
        "throughput_ips": round(1000.0 / latency.mean, 2),
        "load_s": round(load_s, 4),
        "first_inference_ms": round(float(first_ms), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "size_mb": round(size / 1e6, 3),
        "env": capture(threads, {manifest["backend"]: backend.runtime_version(), **versions()}),
    }


def _profile_threads(manifest: dict[str, Any]) -> int:
    from edgetl.targets import load_target

    try:
        return load_target(manifest["target"]).threads
    except EdgetlError:
        return 0


def reference_logits(manifest: dict[str, Any], images: np.ndarray) -> np.ndarray | None:
    """FP32 PyTorch logits from the run the artifact came from, when that run is on this machine."""
    run_path = Path(manifest["run"]["path"])
    if not run_path.is_dir():
        return None
    from edgetl.model import load_run
    from edgetl.parity import torch_logits

    return torch_logits(load_run(run_path).classifier(), images)


def print_report(console: Console, report: dict[str, Any]) -> None:
    """One row per artifact; with several, p50 and size also as ratios to the first one."""
    results = report["results"]
    compare = len(results) > 1
    first = results[0]
    rows = []
    for entry in results:
        acc, lat = entry["accuracy"], entry["latency_ms"]
        agreement = "-" if acc["agreement"] is None else f"{acc['agreement']:.1%}"
        row = [
            entry["name"],
            f"{acc['top1']:.2%}",
            f"{acc['top5']:.2%}",
            agreement,
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            f"{entry['throughput_ips']:.0f}",
            f"{entry['size_mb']:.2f}",
            f"{entry['load_s']:.2f}",
            f"{entry['first_inference_ms']:.1f}",
        ]
        if compare:
            row += [
                f"{lat['p50'] / first['latency_ms']['p50']:.2f}x",
                f"{entry['size_mb'] / first['size_mb']:.2f}x",
            ]
        rows.append(row)
    columns = ["artifact", "top-1", "top-5", "agree", "p50 ms", "p90 ms", "p99 ms", "img/s"]
    columns += ["MB", "load s", "1st ms"]
    if compare:
        columns += [f"p50 / {first['name']}", f"MB / {first['name']}"]
    console.print(table(f"edgetl bench on {report['data']} (batch 1)", columns, rows))
