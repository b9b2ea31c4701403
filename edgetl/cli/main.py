"""The edgetl command line: each command parses its options and calls one stage."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from edgetl import __version__
from edgetl.cli.output import emit, print_predictions, print_quantization, print_run
from edgetl.core.constants import DEFAULT_BACKBONE
from edgetl.core.errors import CheckFailed, EdgetlError
from edgetl.core.ui import fitted_table, make_console, stdout_console

if TYPE_CHECKING:
    pass

F = TypeVar("F", bound=Callable[..., Any])
# Signed artifacts (export --sign): bench, predict, build and compare refuse any other.
trust_option = click.option(
    "--trust",
    "trust",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A public key (ed25519, PEM or OpenSSH .pub) that must have signed the artifact; "
    "repeat for several.",
)
QUICKSTART_IMAGE_SIZE = 128
INTERNAL_ERROR = 3  # neither bad input (2) nor a failed check (1): a bug in edgetl


def handle_errors(func: F) -> F:
    """Map EdgetlError to exit 2, CheckFailed to exit 1 and anything else to exit 3 ("a bug"),
    each with a one-line message and no traceback (EDGETL_DEBUG=1 shows it)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        console = Console(stderr=True, highlight=False)
        try:
            return func(*args, **kwargs)
        except (EdgetlError, CheckFailed) as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("EDGETL_DEBUG"):
                raise
            console.print(
                f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}. "
                f"This is a bug in edgetl {__version__}; please report it with the command "
                "line (EDGETL_DEBUG=1 shows the traceback)",
                soft_wrap=True,
            )
            sys.exit(INTERNAL_ERROR)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetl")
def main() -> None:
    """Fine-tune a head on a frozen pretrained backbone and ship it to edge devices."""


def finetune_options(func: F) -> F:
    options = [
        click.option(
            "--backbone",
            default=DEFAULT_BACKBONE,
            show_default=True,
            help="Registry or timm model name.",
        ),
        click.option(
            "--weights",
            type=click.Path(path_type=Path),
            default=None,
            help="Local backbone checkpoint (.safetensors or state-dict .pth).",
        ),
        click.option("--epochs", type=int, default=30, show_default=True),
        click.option("--lr", type=float, default=1e-3, show_default=True),
        click.option("--batch-size", type=int, default=64, show_default=True),
        click.option(
            "--image-size",
            type=int,
            default=None,
            help="Input size; default from the backbone's pretrained config.",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default="auto",
            show_default=True,
        ),
        click.option(
            "--unfreeze",
            type=int,
            default=0,
            show_default=True,
            help="Also train the last K backbone stages (no feature cache then).",
        ),
        click.option(
            "--hidden",
            type=int,
            default=0,
            show_default=True,
            help="Hidden units of an MLP head; 0 for a linear head.",
        ),
        click.option(
            "--val-fraction",
            type=float,
            default=0.2,
            show_default=True,
            help="Share of each class held out for val (choices: early stopping, INT8 "
            "guard) when DATA has no val/ folder.",
        ),
        click.option(
            "--test-fraction",
            type=float,
            default=0.2,
            show_default=True,
            help="Share of each class held out for test (reported only) when DATA has no "
            "test/ folder.",
        ),
        click.option(
            "--patience",
            type=int,
            default=5,
            show_default=True,
            help="Early stopping: epochs without val-loss gain.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Feature cache directory [default: ~/.cache/edgetl/features].",
        ),
        click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.option("--data", required=True, help="ImageFolder directory, or 'digits'.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory.")
@finetune_options
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the run metadata as JSON.")
@handle_errors
def finetune(data: str, out: Path, as_json: bool, no_cache: bool, **kwargs: Any) -> None:
    """Train a new head for DATA's classes on a frozen backbone."""
    from edgetl.stages.finetune import FinetuneOptions
    from edgetl.stages.finetune import finetune as run_finetune

    console = make_console()
    info = run_finetune(
        FinetuneOptions(data=data, out=out, use_cache=not no_cache, **kwargs), console
    )
    emit(info.to_dict(), as_json, lambda: print_run(info, out))


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--target", required=True, help="Target profile name (see `edgetl targets`) or .toml."
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default=None,
    help="Default: the target's.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Artifact directory [default: RUN/export/TARGET-PRECISION].",
)
@click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch dimension.")
@click.option(
    "--parity-samples",
    type=int,
    default=200,
    show_default=True,
    help="Validation images used for the parity check.",
)
@click.option(
    "--reference-samples",
    type=int,
    default=200,
    show_default=True,
    help="Test images stored in the artifact (reference set) for `edgetl bench ARTIFACT`.",
)
@click.option(
    "--recipe",
    default=None,
    help="INT8: calibration recipe name (calibration/*.toml) or .toml file "
    "[default: the target's].",
)
@click.option(
    "--calib-data",
    type=click.Path(path_type=Path),
    default=None,
    help="INT8: directory of calibration images (flat or class folders) or a .npy of "
    "preprocessed tensors [default: a stratified sample of the run's training split].",
)
@click.option(
    "--calib-samples",
    type=int,
    default=None,
    help="INT8: number of calibration images [default: the recipe's].",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="INT8: most top-1 points the INT8 model may lose against FP32 on validation.",
)
@click.option(
    "--archive",
    is_flag=True,
    help="Also write ARTIFACT.tar.gz (e.g. a bundle to copy to a device).",
)
@click.option(
    "--sign",
    type=click.Path(path_type=Path),
    default=None,
    help="Sign the artifact with this ed25519 private key (see `edgetl keygen`); devices "
    "check it with --trust.",
)
@click.option("--force", is_flag=True, help="Replace an existing artifact directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@handle_errors
def export(run: Path, as_json: bool, **kwargs: Any) -> None:
    """Export RUN for a target: ONNX, backend artifact, parity check, manifest.

    With --precision int8 the model is calibrated, quantized and checked by the accuracy
    guard: if top-1 drops more than --max-accuracy-drop, the head is re-fitted on the
    quantized backbone's features and the most sensitive layers are kept in float until
    the budget holds; otherwise it exits 1 with what was tried and writes nothing.
    """
    from edgetl.quantize.guard import GuardFailed
    from edgetl.stages.export import ExportOptions
    from edgetl.stages.export import export as run_export

    console = make_console()
    try:
        manifest = run_export(ExportOptions(run=run, **kwargs), console)
    except GuardFailed as failure:
        for item in failure.tables():
            console.print(item)
        raise
    emit(manifest.to_dict(), as_json, lambda: print_quantization(manifest))


@main.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data",
    default=None,
    help="Images to measure on: the run's own data (then --split picks the role) or any "
    "folder of <class>/<images> (every image) [default: the artifact's reference set].",
)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train"]),
    default=None,
    help="With the run's own --data: which role [default: test; val and train were chosen "
    "or fitted on].",
)
@click.option(
    "--iterations", type=int, default=200, show_default=True, help="Batch-1 samples, at least."
)
@click.option("--warmup", type=int, default=20, show_default=True)
@click.option(
    "--rounds",
    type=int,
    default=5,
    show_default=True,
    help="Interleaved rounds across the artifacts (A B C, C B A, ...).",
)
@click.option(
    "--min-duration",
    type=float,
    default=0.0,
    show_default=True,
    help="Keep measuring until each artifact has this many seconds of samples.",
)
@click.option(
    "--batch",
    default="1",
    show_default=True,
    help="Batch sizes, e.g. 1,8 (beyond 1: dynamic-batch artifacts).",
)
@click.option("--threads", type=int, default=None, help="Runtime threads [default: the target's].")
@click.option("--limit", type=int, default=None, help="Measure a stratified sample of N images.")
@click.option(
    "--cold/--no-cold",
    default=True,
    show_default=True,
    help="Load time, first inference and peak RSS in a fresh process per artifact.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the edgetl.bench/1 report here.",
)
@click.option("--md", "md_path", type=click.Path(path_type=Path), help="Write a Markdown table.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    help="Write accuracy vs p50 and latency distributions as PNG (pip install 'edgetl[plot]').",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(path_type=Path),
    help="Write JUnit XML: one test case per artifact and check.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="A stored report.json: exit 1 when an artifact regressed against it.",
)
@click.option(
    "--max-regression",
    type=float,
    default=5.0,
    show_default=True,
    help="With --baseline: % of p50 the confidence interval must exceed to fail.",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="With --baseline: top-1 points below the baseline that fail.",
)
@trust_option
@click.option(
    "--allow-overlap",
    is_flag=True,
    help="With a --data folder: also measure images that are the run's own train/val images "
    "(by content); by default they are excluded and counted.",
)
@handle_errors
def bench(artifacts: tuple[Path, ...], **kwargs: Any) -> None:
    """Measure accuracy and batch-1 latency of exported ARTIFACTS with their runtimes.

    Needs nothing but the artifact directory and its runtime: without --data it measures the
    reference set stored in the artifact, with agreement against the FP32 model.
    """
    from edgetl.stages.bench.harness import BenchOptions, Regressed, print_report
    from edgetl.stages.bench.harness import bench as run_bench

    batch = _batch_sizes(kwargs.pop("batch"))
    options = BenchOptions(artifacts=list(artifacts), batch=batch, **kwargs)
    try:
        report = run_bench(options, make_console())
    except Regressed as failure:
        print_report(stdout_console(), failure.report)
        raise
    print_report(stdout_console(), report)


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise EdgetlError(f"--batch {text}: give batch sizes like 1,8") from exc
    return sizes


@main.command()
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--data", default=None, help="As for bench [default: BASE's reference set].")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default=None)
@click.option("--limit", type=int, default=None, help="Measure accuracy on N images.")
@click.option(
    "--rounds", type=int, default=10, show_default=True, help="Fresh-session rounds, at least."
)
@click.option(
    "--max-rounds",
    type=int,
    default=None,
    help="While the interval straddles the threshold, add rounds up to this many "
    "[default: 3x --rounds].",
)
@click.option(
    "--iterations", type=int, default=30, show_default=True, help="Runs per artifact and round."
)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=None, help="Runtime threads [default: the target's].")
@click.option(
    "--max-regression",
    type=float,
    default=5.0,
    show_default=True,
    help="% of p50 the candidate may be slower before the confidence interval fails it.",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="Top-1 points the candidate may lose on the same images.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@trust_option
@handle_errors
def compare(base: Path, candidate: Path, as_json: bool, **kwargs: Any) -> None:
    """Is CANDIDATE slower or less accurate than BASE (an artifact or a stored report.json)?

    Interleaved rounds of fresh runtime sessions in alternating order; the ratio of medians
    candidate/base with a bootstrap confidence interval. Exit 1 when the interval says the
    candidate is slower by more than --max-regression, or its top-1 on the same images is
    more than --max-accuracy-drop below; the reason in one line.
    """
    from edgetl.stages.bench.compare import CompareOptions, Regression
    from edgetl.stages.bench.compare import compare as run_compare

    try:
        result = run_compare(
            CompareOptions(base=base, candidate=candidate, **kwargs), make_console()
        )
    except Regression as failure:
        if as_json:  # the verdict, passed false, then exit 1 with the reason
            click.echo(json.dumps(failure.result.to_dict(), indent=2))
        raise
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.line())


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=None, help="Runtime threads [default: the target's].")
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
@trust_option
@handle_errors
def predict(
    artifact: Path,
    images: tuple[Path, ...],
    top_k: int,
    threads: int | None,
    as_json: bool,
    trust: tuple[Path, ...],
) -> None:
    """Classify IMAGES (files or directories) with an exported ARTIFACT."""
    from edgetl.backends.artifact import load
    from edgetl.core.images import IMAGE_SUFFIXES, list_images

    files: list[Path] = []
    for item in images:
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise EdgetlError(f"{item}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) here")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise EdgetlError(f"{item}: no such image file or directory")
    model = load(artifact, threads, trust)
    if model.proxy is not None:
        make_console().print(
            f"note: {model.manifest.backend} cannot run here; these predictions come from "
            f"{model.proxy} on the artifact's own graph (the host proxy)"
        )
    results = [
        {
            "image": str(path),
            "predictions": [
                {"label": p.label, "index": p.index, "probability": round(p.probability, 6)}
                for p in model.predict(path, top_k)
            ],
        }
        for path in files
    ]
    emit(results, as_json, lambda: print_predictions(results))


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--dla-core", type=int, default=None, help="DLA core [default: the profile's].")
@click.option(
    "--workspace", "workspace_mb", type=int, default=None, help="Builder workspace in MB."
)
@trust_option
@handle_errors
def build(
    bundle: Path, dla_core: int | None, workspace_mb: int | None, trust: tuple[Path, ...]
) -> None:
    """On the device: build BUNDLE's TensorRT engine and check it on the reference set."""
    from edgetl.backends.tensorrt.build import BuildOptions
    from edgetl.backends.tensorrt.build import build as run_build

    options = BuildOptions(bundle, dla_core, workspace_mb, trust)
    record = run_build(options, make_console())  # options.bundle: an archive's unpacked dir
    device = record["device"]
    click.echo(
        f"engine: {options.bundle / 'model.engine'} ({record['tensorrt']}, "
        f"{device['gpu'] or device['module']})"
    )


@main.command()
@click.argument("key", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
@handle_errors
def keygen(key: Path, force: bool) -> None:
    """Make an ed25519 key pair for signing artifacts: KEY (private, mode 0600) and KEY.pub.

    Sign with `edgetl export RUN ... --sign KEY`; devices refuse anything else with
    `--trust KEY.pub` (bench, predict, build, compare) or `edgetl.load(ART, trust=...)`.
    Keys from `ssh-keygen -t ed25519` or `openssl genpkey -algorithm ed25519` work too.
    """
    from edgetl.core.signing import generate

    public, identity = generate(key, force)
    click.echo(f"private key: {key} (keep it secret)\npublic key:  {public} ({identity})")


def _device_present(backend: Any, device: str) -> bool:
    try:
        backend.check_device(device)
    except EdgetlError:
        return False
    return True


@main.command()
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def targets(as_json: bool) -> None:
    """List target profiles, their backend and precisions, and whether the runtime is here."""
    from edgetl.backends import get_backend
    from edgetl.core.targets import list_targets

    rows: list[dict[str, Any]] = []
    for profile in list_targets():
        backend = get_backend(profile.backend)
        present = backend.available()
        device_here = present and _device_present(backend, profile.device)
        rows.append(
            {
                "name": profile.alias or profile.name,
                "alias_of": None if profile.alias is None else profile.name,
                "backend": profile.backend,
                "device": profile.device,
                "precisions": list(profile.precisions),
                "runtime_present": present,
                "device_present": device_here,
                "description": profile.description,
            }
        )
    console = stdout_console()
    emit(
        rows,
        as_json,
        lambda: console.print(
            fitted_table(
                "targets",
                ["name", "backend", "device", "precisions", "runtime", "here", "about"],
                [
                    [
                        r["name"],
                        r["backend"],
                        r["device"],
                        ",".join(r["precisions"]),
                        "yes" if r["runtime_present"] else "no",
                        "yes" if r["device_present"] else "no",
                        r["description"]
                        if r["alias_of"] is None
                        else f"= {r['alias_of']}: {r['description']}",
                    ]
                    for r in rows
                ],
                console.width,
                ["name", "device", "precisions", "here", "runtime", "backend"],
                wrap="about",
                caption="runtime: installed here; here: the device is present",
            )
        ),
    )


@main.command()
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("edgetl-quickstart"), show_default=True
)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--iterations", type=int, default=200, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing quickstart directory.")
@handle_errors
def quickstart(out: Path, epochs: int, iterations: int, force: bool) -> None:
    """The whole flow offline: digits + efficientnet_lite0 -> finetune -> export cpu FP32 and
    accuracy-guarded INT8 -> bench both."""
    from edgetl.core.outputs import check_replaceable, check_writable
    from edgetl.stages.bench.harness import BenchOptions, print_report
    from edgetl.stages.bench.harness import bench as run_bench
    from edgetl.stages.export import ExportOptions
    from edgetl.stages.export import export as run_export
    from edgetl.stages.finetune import FinetuneOptions
    from edgetl.stages.finetune import finetune as run_finetune

    console = make_console()
    check_writable(out / "run", "--out")
    # Quickstart replaces only what it wrote itself (out/run, its exports, report.json).
    check_replaceable(out, force, "quickstart directory", None)
    run_dir = out / "run"
    console.rule("1/4 finetune")
    console.print(
        f"digits are 8x8 pixels: using --image-size {QUICKSTART_IMAGE_SIZE} instead of "
        "the backbone's 224 to keep this to a few minutes on a laptop CPU"
    )
    info = run_finetune(
        FinetuneOptions(
            data="digits", out=run_dir, epochs=epochs, image_size=QUICKSTART_IMAGE_SIZE, force=force
        ),
        console,
    )
    print_run(info, run_dir)
    artifacts = []
    for step, precision in ((2, "fp32"), (3, "int8")):
        guard = " (accuracy guard: at most 1 point below FP32)" if precision == "int8" else ""
        console.rule(f"{step}/4 export --target cpu --precision {precision}{guard}")
        options = ExportOptions(run=run_dir, target="cpu", precision=precision, force=force)
        manifest = run_export(options, console)
        print_quantization(manifest)
        artifacts.append(run_dir / "export" / f"cpu-{precision}")
    console.rule("4/4 bench on the test split (no choice was made on it)")
    report = run_bench(
        BenchOptions(
            artifacts=artifacts,
            data="digits",
            split="test",
            iterations=iterations,
            json_path=out / "report.json",
        ),
        console,
    )
    print_report(stdout_console(), report)
    console.print(f"report: {out / 'report.json'}")
