"""What the command line prints for detectors: the run, the export, the bench."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.core.events import say
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
                *_unfrozen(info),
            ],
        )
    )


def _unfrozen(info: DetectRunInfo) -> list[list[Any]]:
    if info.unfreeze is None:
        return []
    stages = info.unfreeze["stages"]
    kept = "none (the head alone)" if not stages else f"the last {stages} fine-tuned"
    return [[f"--unfreeze {info.unfreeze['asked']}: backbone stages", kept]]


def rows_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    stdout_console().print(table(title, header, rows))


def print_detect_export(result: Any) -> None:
    """The guard's attempts (INT8) and the artifact's mAP on val and test beside FP32's."""
    manifest = result.manifest
    if result.attempts or (manifest is not None and manifest.quantization is not None):
        attempts = manifest.quantization.attempts if manifest is not None else result.attempts
        rows_table(
            "INT8 guard (val mAP50-95, paired bootstrap bound)",
            ["candidate", "val mAP50-95", "drop (pts)", "bound (pts)", "agreement", "verdict"],
            [[a.name, f"{a.top1:.4f}", f"{a.drop_pts:+.2f}", f"{a.drop_upper_pts:.2f}",
              f"{a.agreement:.1%}", a.verdict or "-"] for a in attempts],
        )  # fmt: skip
    if manifest is None:
        return
    speed = manifest.quantization.speed_here if manifest.quantization is not None else {}
    if speed:
        from edgetl.quantize.int8 import payoff_line  # host side: imports onnx

        stdout_console().print(payoff_line(speed))
    rows = []
    for split in ("val", "test"):
        acc = getattr(manifest, split)
        rows.append([
            f"{split}{' (reported only)' if split == 'test' else ''}", acc.n, acc.objects,
            f"{acc.map50_95:.4f}", f"{acc.fp32_map50_95:.4f}", f"{acc.drop_pts:+.2f}",
            f"{acc.map50:.4f}", "-" if acc.agreement is None else f"{acc.agreement:.1%}",
        ])  # fmt: skip
    rows_table(
        f"export {manifest.name} (NMS: {manifest.nms_where})",
        ["split", "images", "objects", "mAP50-95", "FP32", "drop (pts)", "mAP50", "agreement"],
        rows,
    )


def print_detect_bench(report: Any) -> None:
    from edgetl.stages.detect import reports

    rows_table(reports.title(report), reports.COLUMNS, reports.rows(report))
    if any(e.agreement is not None for e in report.results):
        say(
            "agree: the share of FP32 PyTorch's detections scoring >= 0.5 that the "
            "artifact reproduces (same class, IoU >= 0.5): the reference set's FP32 answers"
        )
    from edgetl.cli.output import print_robustness

    print_robustness(stdout_console(), report.results)


def print_detections(results: list[dict[str, Any]]) -> None:
    rows = [
        [r["image"], d["label"], f"{d['score']:.3f}", ", ".join(f"{v:.0f}" for v in d["box"])]
        for r in results
        for d in r["detections"]
    ]
    rows_table("detections (boxes in the image's pixels: x1, y1, x2, y2)",
               ["image", "label", "score", "box"], rows)  # fmt: skip


def draw(image_path: Path, detections: list[Any], out: Path) -> None:
    """A copy of the image with its detections drawn, written atomically."""
    import io

    from PIL import ImageDraw

    from edgetl.core.files import atomic_write_bytes
    from edgetl.core.images import read_image

    image = read_image(image_path).convert("RGB")
    pen = ImageDraw.Draw(image)
    for d in detections:
        pen.rectangle(list(d.box), outline=(255, 40, 40), width=2)
        pen.text((d.box[0] + 3, d.box[1] + 2), f"{d.label} {d.score:.2f}", fill=(255, 255, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())


def print_detect_lab(lab: Any) -> None:
    from edgetl.cli.output import print_robustness
    from edgetl.stages.detect import reports

    title = f"edgetl bench on the lab {lab.lab} (detectors, batch 1 with NMS)"
    rows_table(title, reports.LAB_COLUMNS, reports.lab_rows(lab))
    print_robustness(stdout_console(), reports.lab_entries(lab))


def print_detect_search(report: Any, out: Path) -> None:
    """The detector search's candidates: val mAP (chosen on), latency with NMS, the front."""
    rows = [
        [c.key, c.status if c.status != "measured" else "",
         "-" if c.val_map50_95 is None else f"{c.val_map50_95:.4f}",
         "-" if c.before_training_ms is None else f"{c.before_training_ms:.2f}",
         "-" if c.latency_ms is None else f"{c.latency_ms:.2f}",
         {True: "yes", False: "no", None: "-"}[c.within_budget],
         "front" if c.on_front else "", "chosen" if c.key == report.chosen else ""]
        for c in report.candidates
    ]  # fmt: skip
    timed = ", ".join(sorted({c.runtime for c in report.candidates if c.runtime}))
    title = (f"search {out}: {report.target}, {report.latency} <= {report.budget_ms:g} ms "
             f"(batch 1 with NMS; {timed or 'nothing timed'}); chosen on val")  # fmt: skip
    rows_table(title, ["candidate", "status", "val mAP50-95", "untrained, no NMS",
                       f"{report.latency} ms", "within budget", "", ""], rows)  # fmt: skip
    if report.chosen_test is not None:
        test = report.chosen_test
        say(f"chosen {report.chosen}: test mAP50-95 {test['map50_95']:.4f} (FP32 "
            f"{test['fp32_map50_95']:.4f}; {test['n']} images, reported only)")  # fmt: skip
    for c in report.candidates:
        if c.reason:
            say(f"{c.key}: {c.reason}")
