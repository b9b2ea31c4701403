"""What the command line prints for detectors: the run, the export, the bench."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.core.ui import stdout_console, table

if TYPE_CHECKING:
    from edgetl.stages.detect.run import DetectRunInfo


def print_detect_run(info: DetectRunInfo, out: Path) -> None:
    m, sizes = info.metrics, info.data.sizes
    per_class = ", ".join(
        f"{name} {'-' if ap is None else f'{ap:.3f}'}"
        for name, ap in zip(info.classes, m.per_class_test_ap, strict=True)
    )
    stdout_console().print(
        table(
            f"finetune --task detect {out}",
            ["metric", "value"],
            [
                ["backbone", f"{info.backbone.name} (pyramid {info.channels})"],
                ["classes", len(info.classes)],
                ["images", f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test"],
                ["val mAP50-95 (early stopping chose on it)", f"{m.val_map50_95:.3f}"],
                [
                    f"test mAP50-95 ({m.test_images} images, reported only)",
                    f"{m.test_map50_95:.3f}",
                ],
                ["test mAP50", f"{m.test_map50:.3f}"],
                ["test AP50-95 per class", per_class],
                ["best epoch", m.best_epoch],
                ["epoch on cached pyramids", f"{m.epoch_s_cached:.2f} s"],
            ],
        )
    )


def rows_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    stdout_console().print(table(title, header, rows))
