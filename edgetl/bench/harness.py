"""`edgetl bench`: load each artifact with its own runtime, measure accuracy and latency."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from edgetl.artifacts import sha256_file
from edgetl.bench.accuracy import accuracy_report
from edgetl.bench.env import capture
from edgetl.bench.evalset import EvalSet, eval_set
from edgetl.errors import EdgetlError
from edgetl.formats import RUN_FILE, BenchReport, BenchResult, Manifest
from edgetl.runtime import load
from edgetl.timing import measure, summarize
from edgetl.ui import table
from edgetl.versions import versions


@dataclass
class BenchOptions:
    artifacts: list[Path]
    data: str | None = None  # None: each artifact's reference set
    split: str | None = None  # with the run's own data: test (default), val or train
    iterations: int = 200
    warmup: int = 20
    threads: int | None = None
    limit: int | None = None
    json_path: Path | None = None


def bench(opts: BenchOptions, console: Console) -> BenchReport:
    if opts.iterations < 1:
        raise EdgetlError(f"--iterations {opts.iterations}: must be at least 1")
    if opts.warmup < 0:
        raise EdgetlError(f"--warmup {opts.warmup}: must be 0 or more")
    if opts.threads is not None and opts.threads < 0:
        raise EdgetlError(f"--threads {opts.threads}: must be 0 (runtime decides) or more")
    results, labels = [], []
    for path in opts.artifacts:
        result, label = bench_one(path, opts, console)
        results.append(result)
        labels.append(label)
    report = BenchReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        data="; ".join(sorted(set(labels))),
        command=list(sys.argv),
        results=results,
    )
    if opts.json_path:
        report.write(opts.json_path)
    return report


def bench_one(path: Path, opts: BenchOptions, console: Console) -> tuple[BenchResult, str]:
    model = load(path, opts.threads)  # verifies every checksum first
    manifest = model.manifest
    chosen = eval_set(path, manifest, opts.data, opts.split, opts.limit)
    console.print(f"bench {path.name}: {chosen.label}, {manifest.backend}")
    single = chosen.images[:1]
    first_ms = measure(lambda: model.runner.run(single), 1, 0)[0]
    samples = measure(lambda: model.runner.run(single), opts.iterations, opts.warmup)
    latency = summarize(samples)
    logits = model.logits(chosen.images)
    reference = chosen.fp32_logits
    if reference is None:
        reference = _torch_reference(manifest, chosen)
    accuracy = accuracy_report(logits, chosen.labels, reference, manifest.classes)
    accuracy["absent_classes"] = chosen.absent_classes
    spec = manifest.runtime_spec(opts.threads)
    result = BenchResult(
        artifact=str(path),
        name=manifest.name,
        target=manifest.target,
        backend=manifest.backend,
        precision=manifest.precision,
        accuracy=accuracy,
        latency_ms=latency.to_dict(),
        samples_ms=[round(float(s), 5) for s in samples],
        iterations=opts.iterations,
        warmup=opts.warmup,
        batch_size=1,
        throughput_ips=round(1000.0 / latency.mean, 2),
        load_s=round(model.load_s, 4),
        first_inference_ms=round(float(first_ms), 4),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        size_mb=round(manifest.model_bytes / 1e6, 3),
        env=capture(spec.threads, {manifest.backend: _runtime_version(manifest), **versions()}),
        notes=[f"classes absent from the data: {', '.join(chosen.absent_classes)}"]
        if chosen.absent_classes
        else [],
    )
    return result, chosen.label


def _runtime_version(manifest: Manifest) -> str:
    from edgetl.backends import get_backend

    return get_backend(manifest.backend).runtime_version()


def _torch_reference(manifest: Manifest, chosen: EvalSet) -> np.ndarray | None:
    """FP32 PyTorch logits from the artifact's run, when that very run (by hash) and torch are
    on this machine; on a device there are none, and the reference set gives agreement."""
    run_path = Path(manifest.run.path)
    if (
        not (run_path / RUN_FILE).is_file()
        or sha256_file(run_path / RUN_FILE) != manifest.run.sha256
    ):
        return None
    try:
        from edgetl.model import load_run
        from edgetl.parity import torch_logits
    except ImportError:
        return None
    return torch_logits(load_run(run_path).classifier(), chosen.images)


def print_report(console: Console, report: BenchReport) -> None:
    """One row per artifact; with several, p50 and size also as ratios to the first one."""
    results = report.results
    compare = len(results) > 1
    first = results[0]
    rows = []
    for entry in results:
        acc, lat = entry.accuracy, entry.latency_ms
        agreement = "-" if acc["agreement"] is None else f"{acc['agreement']:.1%}"
        row = [
            entry.name,
            f"{acc['top1']:.2%}",
            f"{acc['top5']:.2%}",
            agreement,
            str(acc["n"]),
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            f"{entry.throughput_ips:.0f}",
            f"{entry.size_mb:.2f}",
            f"{entry.load_s:.2f}",
            f"{entry.first_inference_ms:.1f}",
        ]
        if compare:
            row += [
                f"{lat['p50'] / first.latency_ms['p50']:.2f}x",
                f"{entry.size_mb / first.size_mb:.2f}x",
            ]
        rows.append(row)
    columns = ["artifact", "top-1", "top-5", "agree", "n", "p50 ms", "p90 ms", "p99 ms", "img/s"]
    columns += ["MB", "load s", "1st ms"]
    if compare:
        columns += [f"p50 / {first.name}", f"MB / {first.name}"]
    console.print(table(f"edgetl bench on {report.data} (batch 1)", columns, rows))
    for entry in results:
        for note in entry.notes:
            console.print(f"{entry.name}: {note}")
