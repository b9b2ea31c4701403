"""`edgetl predict`: classify images with an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
@click.option(
    "--save",
    type=click.Path(path_type=Path),
    default=None,
    help="Detectors: write a copy of each image with its boxes drawn into this directory.",
)
@click.option("--force", is_flag=True, help="With --save: overwrite drawings already there.")
@trust_option
@handle_errors
def predict(
    artifact: Path,
    images: tuple[Path, ...],
    top_k: int,
    threads: int | None,
    as_json: bool,
    save: Path | None,
    force: bool,
    trust: tuple[Path, ...],
) -> None:
    """Classify IMAGES (files or directories) with an exported ARTIFACT, or detect objects
    in them with a detector's (boxes in each image's own pixels)."""
    from edgetl.backends.artifact import load
    from edgetl.backends.detector import DetectorModel

    files = _files(images)
    model = load(artifact, threads, trust)
    if isinstance(model, DetectorModel):
        _detect(model, files, as_json, save, force)
        return
    if save is not None:
        raise EdgetlError("--save: draws detections; this artifact is a classifier's")
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


def _files(images: tuple[Path, ...]) -> list[Path]:
    """The image files given, directories listed."""
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
    return files


def _detect(model: Any, files: list[Path], as_json: bool, save: Path | None, force: bool) -> None:
    """Per image {"image", "detections": [{"box", "label", "score"}]}; --save draws them."""
    from edgetl.cli.detect_output import draw, print_detections

    if save is not None:
        taken = [save / f"{f.stem}.png" for f in files if (save / f"{f.stem}.png").exists()]
        if taken and not force:
            raise EdgetlError(f"--save {save}: {taken[0]} exists; pass --force to overwrite")
        names = [f.stem for f in files]
        if len(set(names)) != len(names):
            raise EdgetlError(f"--save {save}: two images share a name; predict them apart")
    results = []
    for path in files:
        found = model.predict(path)
        results.append({"image": str(path), "detections": [d.to_dict() for d in found]})
        if save is not None:
            draw(path, found, save / f"{path.stem}.png")
    emit(results, as_json, lambda: print_detections(results))
