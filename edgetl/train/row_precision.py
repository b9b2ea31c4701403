"""float16 or float32 cache rows: float16 halves the cache and the features held in memory,
and is used where it does not change the head's val top-1 by more than 0.1 pt.

The choice is measured once per cache namespace (backbone, weights, preprocessing, AMP), on
the first run that has a val split: the same head trained on the float32 rows and on the
rows rounded to float16, both scored on val. It is recorded in the namespace
(precision.json) with both figures; from then on every run trains on rows rounded to the
chosen precision, whether extracted now or read back, so a cached re-run trains on exactly
the features a cold run did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from edgetl.core.events import quiet
from edgetl.core.files import atomic_write_text
from edgetl.train.loop import HeadTraining, eval_logits, evaluate_logits, train_head
from edgetl.train.model import Head

TOLERANCE_PT = 0.1  # the bound on what float16 rows may cost the head on val
PRECISION_FILE = "precision.json"


@dataclass(frozen=True)
class RowPrecision:
    dtype: str  # "float16" or "float32"
    val_top1_float32: float  # a detector's namespace: val mAP50-95 (metric)
    val_top1_float16: float
    val_images: int
    metric: str = "top-1"

    def line(self) -> str:
        shown = "{:.2%}" if self.metric == "top-1" else "{:.4f}"
        wide, narrow = (shown.format(v) for v in (self.val_top1_float32, self.val_top1_float16))
        return (
            f"rows {self.dtype} (head val {self.metric} {wide} on float32 rows, {narrow} on "
            f"float16, {self.val_images:,} val images)"
        )

    def rounded(self, features: torch.Tensor) -> torch.Tensor:
        """Features as a run trains on them: rounded through float16 when that is the choice."""
        return features.half().float() if self.dtype == "float16" else features.float()


def recorded(namespace_dir: Path) -> RowPrecision | None:
    path = namespace_dir / PRECISION_FILE
    try:
        return RowPrecision(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # not decided yet (or unreadable: decided again)


def measure(
    features: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    classes: int,
    hidden: int,
    settings: HeadTraining,
) -> RowPrecision:
    """Train the head on float32 and on float16-rounded features; compare val top-1."""
    scores = []
    for rows in (features, {k: v.half().float() for k, v in features.items()}):
        with torch.random.fork_rng():  # the run's own head starts from the run's seed state
            torch.manual_seed(settings.seed)
            head = Head(rows["train"].shape[1], classes, hidden)
            head.set_feature_stats(rows["train"])
            with quiet():  # the trial heads' epochs are not the run's
                train_head(head, rows["train"], labels["train"], rows["val"], labels["val"],
                           settings)  # fmt: skip
        scores.append(evaluate_logits(eval_logits(head, rows["val"]), labels["val"])[1])
    close = abs(scores[0] - scores[1]) * 100 <= TOLERANCE_PT
    return RowPrecision(
        "float16" if close else "float32", round(scores[0], 5), round(scores[1], 5),
        len(labels["val"]),
    )  # fmt: skip


def record(namespace_dir: Path, choice: RowPrecision) -> None:
    namespace_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(namespace_dir / PRECISION_FILE, json.dumps(asdict(choice), indent=2) + "\n")
