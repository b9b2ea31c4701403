"""`edgetl predict`: classify images with an artifact."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli.app import handle_errors, main, trust_option
from edgetl.cli.output import emit, print_predictions
from edgetl.core.errors import EdgetlError
from edgetl.core.ui import make_console


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
