"""float16 or float32 pyramid rows on disk: a detector's cache rows are large (EfficientNet-
Lite0 at 256 px: 90,112 values an image, 352 KB in float32), and the head trains on them
rounded to float16 either way (half the memory). Whether the trained head notices the
rounding is measured once per cache namespace, on the first run: its val mAP50-95 on the
float32 rows against on the same rows rounded to float16. Within TOLERANCE_PT the shards of
both views are narrowed to float16 and every later row is written so (recorded in the
namespace's precision.json, as the classifier's choice is); otherwise they stay float32 and
the run says so (the export then runs the head on float32 pyramids it did not train on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgetl.core.data.detection import DetectionSet
from edgetl.core.events import say
from edgetl.core.letterbox import Letterbox
from edgetl.core.postprocess import NmsSettings
from edgetl.train.detector.fit import outputs, scored
from edgetl.train.detector.model import DetectorHead
from edgetl.train.feature_store import FeatureStore
from edgetl.train.row_precision import TOLERANCE_PT, RowPrecision, record, recorded

METRIC = "mAP50-95"


def row_precision(
    cache: Path,
    namespaces: list[dict[str, Any]],
    head: DetectorHead,
    val_rows: torch.Tensor,
    val: DetectionSet,
    letterbox: Letterbox,
    settings: NmsSettings,
) -> RowPrecision:
    """The namespaces' recorded choice, or measured now with `head` on val's float32 rows,
    recorded in every namespace, and (float16) their shards narrowed."""
    stores = [FeatureStore.open(cache, fields) for fields in namespaces]
    choice = recorded(stores[0].dir)
    if choice is not None:
        return choice
    maps = [scored(outputs(head, rows), val, letterbox, settings)[0].map50_95
            for rows in (val_rows.float(), val_rows.half())]  # fmt: skip
    close = abs(maps[0] - maps[1]) * 100 <= TOLERANCE_PT
    choice = RowPrecision("float16" if close else "float32", round(maps[0], 5), round(maps[1], 5),
                          len(val), METRIC)  # fmt: skip
    for store in stores:
        record(store.dir, choice)
        if close:
            store.narrow()
    say(f"feature cache: chose {choice.line()}")
    if not close:
        say("[yellow]warning:[/] the head notices float16 rows; the cache keeps float32 rows")
    return choice
