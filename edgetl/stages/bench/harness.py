"""`edgetl bench`: load each artifact with its own runtime, measure accuracy and latency.

Latency is measured in interleaved rounds across all artifacts (A B C, C B A, ...), so a
burst of noise on a shared machine hits every artifact alike; cold start (load, first
inference, peak memory) is measured in a fresh process per artifact.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.backends import get_runtime
from edgetl.backends.artifact import Model, load
from edgetl.core.env import capture
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.evidence import DEFAULT_CONFIDENCE, promise_note
from edgetl.core.measures.metrics import paired_drop
from edgetl.core.measures.regression import coefficient_of_variation
from edgetl.core.measures.timing import interleaved_samples, summarize
from edgetl.core.outputs import check_not_input, check_writable
from edgetl.core.records import BenchReport, BenchResult, Manifest
from edgetl.core.ui import heartbeat
from edgetl.core.verdict import Outcome
from edgetl.core.versions import versions
from edgetl.stages.bench.accuracy import accuracy_report
from edgetl.stages.bench.cold import cold_start
from edgetl.stages.bench.evalset import EvalSet, eval_set
from edgetl.stages.bench.gate import check_baseline
from edgetl.stages.bench.names import unique_names
from edgetl.stages.bench.options import BenchOptions

HIGH_CV = 0.10  # above this, the latency numbers are too noisy to compare closely


@dataclass
class Loaded:
    path: Path
    model: Model
    chosen: EvalSet
    notes: list[str] = field(default_factory=list)


def check_options(opts: BenchOptions) -> None:
    for option, value, least in (
        ("--iterations", opts.iterations, 1),
        ("--warmup", opts.warmup, 0),
        ("--rounds", opts.rounds, 1),
        ("--threads", opts.threads if opts.threads is not None else 0, 0),
    ):
        if value < least:
            raise EdgetlError(f"{option} {value}: must be at least {least}")
    if opts.min_duration < 0:
        raise EdgetlError(f"--min-duration {opts.min_duration}: must be 0 or more seconds")
    if not opts.batch or min(opts.batch) < 1:
        raise EdgetlError(f"--batch {opts.batch}: give batch sizes of 1 or more, e.g. 1,8")
    if opts.max_regression < 0:
        raise EdgetlError(f"--max-regression {opts.max_regression}: give a percentage >= 0")
    if opts.baseline is not None and not opts.baseline.is_file():
        raise EdgetlError(f"--baseline {opts.baseline}: no such report file")
    if opts.measures_robustness:
        from edgetl.stages.bench.robustness import check_inputs

        check_inputs(opts)
    # A report inside an artifact is fine (`edgetl bench . --json r.json` on a device): the
    # manifest lists what the artifact is, and nothing else is loaded.
    artifacts = {f"the artifact {path}": path for path in opts.artifacts}
    inputs: dict[str, Path | None] = {"--baseline": opts.baseline, **artifacts}
    if opts.data is not None:
        inputs["--data"] = Path(opts.data)
    for option, path in (
        ("--json", opts.json_path),
        ("--md", opts.md_path),
        ("--junit", opts.junit_path),
        ("--plot", opts.plot_path),
    ):
        if path is not None:  # checked now, not after minutes of measuring
            check_not_input(path, inputs, option, allowed_inside=artifacts)
            _check_not_artifact_file(path, option, opts.artifacts)
            check_writable(path, option)


def _check_not_artifact_file(path: Path, option: str, artifacts: list[Path]) -> None:
    """A report may go inside an artifact, never onto one of its files (its manifest, its
    signature, anything the manifest lists, an engine built there): `--md ART/model.onnx`
    turned the model into Markdown and exited 0."""
    from edgetl.backends.probe import BUILD_OUTPUTS  # what a device builds into a bundle
    from edgetl.core.artifact.signing import SIGNATURE_FILE
    from edgetl.core.records import MANIFEST_FILE

    target = path.expanduser().resolve()
    for artifact in artifacts:
        root = artifact.expanduser().resolve()
        if target.parent != root and root not in target.parents:
            continue
        names = {MANIFEST_FILE, SIGNATURE_FILE, *BUILD_OUTPUTS, *_listed(root / MANIFEST_FILE)}
        for name in names:
            if (root / name).resolve() == target:
                raise EdgetlError(
                    f"{option} {path} is {name} of the artifact {artifact}: the report would "
                    "overwrite it; write the report outside the artifact or under another name"
                )


def _listed(manifest: Path) -> list[str]:
    """The file names a manifest lists, read leniently (the artifact is verified at load;
    here only its names matter)."""
    try:
        files = json.loads(manifest.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in files if isinstance(name, str)] if isinstance(files, dict) else []


# The report, and with a baseline what regressed (`failures`, per artifact).
BenchOutcome = Outcome[BenchReport]


def bench(opts: BenchOptions) -> BenchOutcome:
    """Measure every artifact and write the reports; with a baseline, the outcome says what
    regressed (the command line turns that into exit 1 after showing the report)."""
    check_options(opts)
    baseline = None
    if opts.baseline is not None:
        baseline = BenchReport.read(opts.baseline)
        for index, entry in enumerate(baseline.results):  # checked before the measuring
            entry.stored_samples(opts.baseline, index)
    shared: dict[tuple[Any, ...], EvalSet] = {}
    loaded: list[Loaded] = []
    try:
        for path in opts.artifacts:
            loaded.append(_load(path, opts, shared))
        _check_batches(loaded, opts)
        report = _measure(loaded, opts)
    finally:
        for item in loaded:
            item.model.close()
    failures = [] if baseline is None else check_baseline(report, baseline, opts.gate)
    write_reports(report, opts)
    return BenchOutcome(report, failures)


def _check_batches(loaded: list[Loaded], opts: BenchOptions) -> None:
    """--batch within what each model takes (exit 2 before measuring anything)."""
    for item in loaded:
        limit = item.model.max_batch
        larger = [b for b in opts.batch if limit is not None and b > limit]
        if larger:
            raise EdgetlError(
                f"--batch {','.join(map(str, larger))}: {item.model.path}'s engine was built "
                f"with an optimization profile for batches 1..{limit}; use --batch up to {limit}"
            )


def _measure(loaded: list[Loaded], opts: BenchOptions) -> BenchReport:
    names = unique_names([item.model.manifest.name for item in loaded],
                         [item.path for item in loaded])  # fmt: skip
    calls = {name: _single_call(item) for name, item in zip(names, loaded, strict=True)}
    say(
        f"latency: {len(calls)} artifact(s) interleaved, {opts.rounds}+ rounds, "
        f"{opts.iterations}+ samples each"
    )
    with heartbeat("timing"):
        samples = interleaved_samples(
            calls, opts.iterations, opts.rounds, opts.warmup, opts.min_duration
        )
    results = []
    for name, item in zip(names, loaded, strict=True):
        what = "accuracy, load in a fresh process" if opts.cold else "accuracy"
        with heartbeat(f"{name}: {what}"):
            results.append(_result(name, item, samples[name], opts))
    if opts.measures_robustness:
        _robustness(results, loaded, opts)
    return BenchReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        data="; ".join(sorted({item.chosen.label for item in loaded})),
        command=list(sys.argv),
        results=results,
    )


def _robustness(results: list[BenchResult], loaded: list[Loaded], opts: BenchOptions) -> None:
    """Each result's robustness, on its reference set (stages/bench/robustness.py)."""
    from edgetl.stages.bench.robustness import classifier, measure

    subjects = []
    for result, item in zip(results, loaded, strict=True):
        if item.chosen.pixels is None:  # check_inputs refused --data and --limit
            raise EdgetlError(f"{item.path}: no reference pixels to corrupt")
        clean = np.asarray(result.accuracy.predictions)
        subjects.append(classifier(result.name, item.path, item.model, item.chosen.pixels,
                                   item.chosen.labels, clean))  # fmt: skip
    found = measure(subjects, opts.corruptions, opts.attack)
    for result in results:
        result.robustness = found[result.name]
        if opts.attack is None:
            result.notes.append(
                f"no attack measured: `edgetl attack {result.artifact} --out FILE` crafts one "
                "from the public backbone; then --attack FILE"
            )


def _load(path: Path, opts: BenchOptions, shared: dict[tuple[Any, ...], EvalSet]) -> Loaded:
    model = load(path, opts.threads, opts.trust)  # verifies every checksum first
    path = model.path  # an archive's unpacked directory
    manifest = model.manifest
    # Artifacts of one run share --data's images: read and preprocess them once.
    key = (tuple(manifest.classes), manifest.preprocess, manifest.run.data.fingerprint)
    if opts.data is not None and key in shared:
        chosen = shared[key]
    else:
        chosen = eval_set(path, manifest, opts.data, opts.split, opts.limit, opts.allow_overlap)
        if opts.data is not None:
            shared[key] = chosen
    runtime: str = model.manifest.backend
    if model.proxy is not None:
        runtime = f"{model.proxy} (host proxy for {model.manifest.backend}: accuracy only)"
    say(f"bench {path}: {chosen.label}, {runtime}")
    compiled = get_runtime(manifest.backend).artifact_notes(path)
    return Loaded(path, model, chosen, [*chosen.notes, *compiled])


def _single_call(item: Loaded) -> Any:
    single = np.ascontiguousarray(item.chosen.images[:1])
    return lambda: item.model.runner.run(single)


def _result(name: str, item: Loaded, samples: np.ndarray, opts: BenchOptions) -> BenchResult:
    manifest = item.model.manifest
    latency = summarize(samples)
    cv = coefficient_of_variation(samples)
    batches = _batches(item, opts)  # may add a note
    notes = list(item.notes)
    if item.model.proxy is not None:
        notes.append(
            f"{manifest.backend} is not installed here: accuracy measured with the host proxy "
            f"{item.model.proxy} on the same graph; its latency does not represent the device"
        )
    if cv > HIGH_CV and item.model.proxy is None:  # a proxy's latency is not shown at all
        notes.append(
            f"latency varies a lot (CV {cv:.0%} > {HIGH_CV:.0%}): the machine is busy or "
            "throttling; raise --min-duration or --rounds before comparing"
        )
    logits = item.model.logits(item.chosen.images)
    reference = item.chosen.fp32_logits
    if reference is None:
        reference = _torch_reference(manifest, item.chosen)
    accuracy = accuracy_report(
        logits, item.chosen.labels, reference, manifest.classes, item.chosen.absent_classes
    )
    if item.chosen.absent_classes:
        notes.append(f"classes absent from the data: {', '.join(item.chosen.absent_classes)}")
    promise = _promise(manifest, logits, reference, item.chosen.labels)
    if promise is not None:
        notes.append(promise)
        say(f"{name}: {promise}")
    spec = manifest.runtime_spec(opts.threads)
    cold = cold_start(item.path, opts.threads) if opts.cold else _warm_cold(item)
    return BenchResult(
        artifact=str(item.path),
        name=name,
        target=manifest.target,
        backend=item.model.proxy or manifest.backend,  # the runtime that actually ran
        precision=manifest.precision,
        accuracy=accuracy,
        latency_ms=latency.to_dict(),
        samples_ms=[round(float(s), 5) for s in samples],
        iterations=len(samples),
        warmup=opts.warmup,
        batch_size=1,
        throughput_ips=round(1000.0 / latency.mean, 2),
        load_s=cold["load_s"],
        first_inference_ms=cold["first_inference_ms"],
        peak_rss_mb=cold["peak_rss_mb"],
        size_mb=round((item.model.size_bytes or manifest.model_bytes) / 1e6, 3),
        env=_env(item, spec.threads),
        notes=notes,
        rounds=opts.rounds,
        cv=round(cv, 4),
        batches=batches,
        rss_before_load_mb=cold.get("rss_before_load_mb", 0.0),
        proxy_for=manifest.backend if item.model.proxy is not None else "",
    )


def _warm_cold(item: Loaded) -> dict[str, float]:
    """Without --cold: the load time of this process; memory is not the model's alone."""
    return {"load_s": round(item.model.load_s, 4), "first_inference_ms": 0.0, "peak_rss_mb": 0.0}


def _batches(item: Loaded, opts: BenchOptions) -> dict[str, dict[str, Any]]:
    """Latency and throughput at batch sizes beyond 1 (dynamic-batch artifacts only)."""
    found: dict[str, dict[str, Any]] = {}
    sizes = [b for b in opts.batch if b > 1]
    if not sizes:
        return found
    if item.model.manifest.input_shape[0] is not None:
        item.notes.append(
            f"batch sizes {sizes} skipped: the model has a static batch of 1 "
            "(export with --dynamic-batch)"
        )
        return found
    images = item.chosen.images
    runner = item.model.runner
    for size in sizes:
        batch = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))

        def call(b: np.ndarray = batch) -> object:
            return runner.run(b)

        samples = interleaved_samples({"b": call}, max(10, opts.iterations // size), 1, 2)["b"]
        latency = summarize(samples)
        found[str(size)] = {
            "latency_ms": latency.to_dict(),
            "throughput_ips": round(size * 1000.0 / latency.mean, 2),
        }
    return found


def _promise(
    manifest: Manifest, logits: np.ndarray, reference: np.ndarray | None, labels: np.ndarray
) -> str | None:
    """An INT8 artifact's drop against FP32 on these images, with its interval, beside the
    budget and the guard's bound on val (None: not INT8, or no FP32 answers here)."""
    quant = manifest.quantization
    if quant is None or reference is None:
        return None
    paired = paired_drop(reference, logits, labels)
    chosen = quant.attempts[-1] if quant.attempts else None
    bound = chosen.drop_upper_pts if chosen is not None else None
    confidence = (chosen.confidence if chosen is not None else None) or DEFAULT_CONFIDENCE
    text, _ = promise_note(paired, quant.budget_pts, bound, confidence)
    return text


def _env(item: Loaded, threads: int) -> dict[str, Any]:
    """The machine; its GPU from the runtime where nvidia-smi has none (a Jetson)."""
    manifest = item.model.manifest
    env = capture(threads, {manifest.backend: _runtime_version(manifest), **versions()})
    env["gpu"] = env["gpu"] or item.model.gpu
    return env


def _runtime_version(manifest: Manifest) -> str:
    from edgetl.backends import get_runtime

    return get_runtime(manifest.backend).runtime_version()


def _torch_reference(manifest: Manifest, chosen: EvalSet) -> np.ndarray | None:
    """FP32 PyTorch logits from the artifact's run, when that very run (by hash) and torch are
    on this machine; on a device there are none, and the reference set gives agreement."""
    run_dir = manifest.run.here()
    if run_dir is None:
        return None
    try:
        from edgetl.train.model import load_run, torch_logits
    except ImportError:
        return None
    return torch_logits(load_run(run_dir).classifier(), chosen.images)


def write_reports(report: BenchReport, opts: BenchOptions) -> None:
    from edgetl.stages.bench import reports

    if opts.json_path:
        report.write(opts.json_path)
    if opts.md_path:
        reports.write_markdown(report, opts.md_path)
    if opts.junit_path:
        reports.write_junit(report, opts.junit_path)
    if opts.plot_path:
        reports.write_plot(report, opts.plot_path)
