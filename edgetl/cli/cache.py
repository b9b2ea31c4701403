"""`edgetl cache info|prune`: what the per-image feature cache holds, and removing rows no
recent run used."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import click

from edgetl.cli.app import handle_errors, main
from edgetl.core.errors import EdgetlError
from edgetl.core.ui import stdout_console, table

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Feature cache directory [default: EDGETL_CACHE_DIR or ~/.cache/edgetl/features].",
)


@main.group()
def cache() -> None:
    """The per-image feature cache that finetune reads and fills."""


def _root(cache_dir: Path | None) -> Path:
    from edgetl.train.features import default_cache_dir

    return cache_dir or default_cache_dir()


@cache.command()
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def info(cache_dir: Path | None, as_json: bool) -> None:
    """Rows, shards and size per backbone/preprocessing, and when a run last used them."""
    from edgetl.train.feature_store import namespaces

    root = _root(cache_dir)
    found = [entry.to_dict() for entry in namespaces(root)]
    if as_json:
        click.echo(json.dumps({"cache_dir": str(root), "namespaces": found}, indent=2))
        return
    rows = [
        [
            entry["backbone"],
            entry["size"],
            "yes" if entry["amp"] else "no",
            f"{entry['rows']:,}",
            entry["precision"] or "undecided",
            entry["shards"],
            f"{entry['mb']:.1f}",
            entry["damaged"] or "",
            _when(entry["last_used"]),
        ]
        for entry in found
    ]
    columns = ["backbone", "px", "AMP", "rows", "as", "shards", "MB", "damaged", "last used"]
    stdout_console().print(table(f"feature cache {root}", columns, rows))


@cache.command()
@cache_dir_option
@click.option(
    "--unused-days",
    type=float,
    required=True,
    help="Remove the rows no run read in this many days (0: every row).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@handle_errors
def prune(cache_dir: Path | None, unused_days: float, dry_run: bool) -> None:
    """Remove rows no recent run read (run it while no finetune uses this cache)."""
    from edgetl.train.feature_store import prune as run_prune

    if unused_days < 0:
        raise EdgetlError(f"--unused-days {unused_days}: give 0 or more days")
    root = _root(cache_dir)
    report = run_prune(root, unused_days, dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{root}: {verb} {report.rows_removed:,} rows ({report.bytes_freed / 1e6:.1f} MB), "
        f"kept {report.rows_kept:,}"
    )


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")
