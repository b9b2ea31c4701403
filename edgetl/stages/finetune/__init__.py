"""The finetune stage: a new head for the data's classes on a frozen backbone (+ optional
unfreeze), written as a run.

    options.py   what finetune is asked (light: the command line reads it first)
    stage.py     data, features (every torchrun rank), training, the run written
    training.py  the head, --unfreeze K / auto, --scratch-baseline
    writing.py   the run directory, staged and written whole

This package's own import is light; finetune() loads the stage when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgetl.stages.finetune.options import FinetuneOptions

if TYPE_CHECKING:
    from edgetl.core.data.splits import Splits
    from edgetl.core.records import RunInfo

__all__ = ["FinetuneOptions", "finetune"]


def finetune(opts: FinetuneOptions, splits: Splits | None = None) -> RunInfo | None:
    """stage.finetune: train and write the run (see there)."""
    from edgetl.stages.finetune.stage import finetune as run

    return run(opts, splits)
