"""Detection, measured in one run (issue 27): for the offline scenes and a second set made
from other photos, fine-tune a detector head on efficientnet_lite0's frozen pyramid, export
FP32 and INT8 (the mAP guard, budget 1.0 point) for `cpu` and `openvino-cpu`, and print side
by side: test mAP50-95 / mAP50 and each INT8 artifact's drop against FP32 on test (no choice
was made on it), batch-1 p50 with NMS of each artifact against PyTorch eager with
torchvision's NMS (interleaved rounds), NMS's share of that latency, and one epoch of head
training on cached pyramids against a plain loop through the frozen backbone.

    python tools/bench_detect.py [--out DIR] [--epochs 16] [--iterations 200]
        [--sets scenes,other-photos]

The Jetson INT8 bundle (jetson = orin-nano, TensorRT 10.3) is guarded and measured on the
host proxy (ONNX Runtime on its Q/DQ graph): its mAP rows are the bundle's graph, not an
engine's; it has no latency row (no TensorRT here).

Goals: every INT8 artifact within 1.0 point of FP32's mAP50-95 on test at <= 0.6x FP32's
p50 on the CPU targets; cached head training >= 5x faster per epoch than the plain loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgetl.backends.detector import detect
from edgetl.core.data.detection_splits import load_detection
from edgetl.core.data.scenes import make_scenes
from edgetl.core.events import install
from edgetl.core.images import read_image
from edgetl.core.measures.timing import interleaved_p50
from edgetl.core.postprocess import detections
from edgetl.core.ui import make_console, stdout_console, table

SETS = {"scenes": "scenes", "other-photos": "other"}
TARGETS = (
    ("cpu", "fp32"),
    ("cpu", "int8"),
    ("openvino-cpu", "fp32"),
    ("openvino-cpu", "int8"),
    ("jetson", "int8"),
)
# A Jetson bundle's accuracy is its Q/DQ graph on the host proxy; its latency is the device's
# engine, not measurable here, so it has no latency row.
ACCURACY_ONLY = ("jetson-orin-nano",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-detect"))
    parser.add_argument("--epochs", type=int, default=16)  # the quickstart's
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--sets", default=",".join(SETS), help="Which sets, comma-separated.")
    args = parser.parse_args()
    install(make_console())
    torch.set_num_threads(2)
    rows, speed, training = [], [], []
    for name in args.sets.split(","):
        kit = SETS[name]
        data = args.out / name / "data"
        if not (data / "data.yaml").is_file():
            make_scenes(data, kit=kit)
        run = _finetune(data, args.out / name / "run", args.epochs)
        artifacts = _exports(run)
        rows += _accuracy(name, run, artifacts)
        speed += _latency(name, run, artifacts, args.iterations)
        training.append(_training_speed(name, run))
    _print(rows, speed, training)
    (args.out / f"results-{args.sets.replace(',', '+')}.json").write_text(
        json.dumps({"accuracy": rows, "latency": speed, "training": training}, indent=2)
    )
    return 0


def _finetune(data: Path, out: Path, epochs: int) -> Path:
    from edgetl.stages.finetune import FinetuneOptions, finetune

    if not (out / "edgetl.json").is_file():
        finetune(FinetuneOptions(data=str(data), out=out, epochs=epochs, task="detect"))
    return out


def _exports(run: Path) -> dict[str, Path]:
    from edgetl.stages.export import ExportOptions, export

    found = {}
    for target, precision in TARGETS:
        name = "jetson-orin-nano" if target == "jetson" else target
        out = run / "export" / f"{name}-{precision}"
        if (out / "manifest.json").is_file() and (out.parent / f"{out.name}.export_s").is_file():
            found[f"{name}-{precision}"] = out  # made by an earlier run of this tool
            continue
        refused = out.parent / f"{out.name}.refused"
        if refused.is_file():
            print(f"{run} {target} {precision}: {refused.read_text()}", file=sys.stderr)
            continue
        started = time.perf_counter()
        result = export(ExportOptions(run=run, target=target, precision=precision, force=True))
        if result.manifest is None:
            print(f"{run} {target} {precision}: {result.failures}", file=sys.stderr)
            (out.parent / f"{out.name}.refused").write_text("; ".join(result.failures))
            continue
        found[f"{name}-{precision}"] = out
        (out.parent / f"{out.name}.export_s").write_text(f"{time.perf_counter() - started:.1f}")
    return found


def _accuracy(name: str, run: Path, artifacts: dict[str, Path]) -> list[dict]:
    rows = []
    for key, path in artifacts.items():
        manifest = json.loads((path / "manifest.json").read_text())
        test, quant = manifest["test"], manifest.get("quantization")
        rows.append({
            "set": name, "artifact": key, "n": test["n"], "objects": test["objects"],
            "fp32_map50_95": test["fp32_map50_95"], "map50_95": test["map50_95"],
            "map50": test["map50"],
            "drop_pts": round((test["fp32_map50_95"] - test["map50_95"]) * 100, 2),
            "agreement": test["agreement"],
            "chosen": quant["attempts"][-1]["name"] if quant else "-",
            "val_bound_pts": quant["attempts"][-1]["drop_upper_pts"] if quant else None,
            "export_s": float((path.parent / f"{path.name}.export_s").read_text()),
        })  # fmt: skip
    return rows


def _latency(name: str, run: Path, artifacts: dict[str, Path], iterations: int) -> list[dict]:
    """Batch-1 p50 with NMS, interleaved: PyTorch eager (torchvision NMS) and each artifact
    (its runtime, NumPy NMS); and each artifact's NMS alone."""
    from torchvision.ops import batched_nms

    import edgetl
    from edgetl.stages.detect.run import load_detect_run, run_detector

    info = load_detect_run(run)
    model = run_detector(run, info)
    test = load_detection(Path(info.data.source), info.data.val_fraction,
                          info.data.test_fraction, info.data.seed).test  # fmt: skip
    image = read_image(test.root / test.keys[0])
    batch = info.letterbox(image)[None]
    nms = info.nms

    def eager() -> object:
        with torch.inference_mode():
            boxes, scores = model(torch.from_numpy(batch))
            flat = scores[0].flatten()
            keep = flat > nms.score_threshold
            index = keep.nonzero()[:, 0]
            where, label = index // scores.shape[-1], index % scores.shape[-1]
            return batched_nms(boxes[0][where], flat[index], label, nms.iou_threshold)

    loaded = {key: edgetl.load(path) for key, path in artifacts.items()
              if not key.startswith(ACCURACY_ONLY)}  # fmt: skip
    calls = {"pytorch-eager": eager}
    nms_calls = {}
    for key, artifact in loaded.items():
        # From the letterboxed input, as PyTorch eager above and `edgetl bench` are timed:
        # letterboxing the decoded image on every call (PIL, ~2 ms here) added the same
        # milliseconds to FP32 and INT8 and read the scenes' cpu INT8 at 0.62x FP32.
        calls[key] = lambda a=artifact: detect(a.runner, batch, [image.size], a.manifest)
        raw = artifact.runner.named(batch)
        if artifact.manifest.nms_where == "device-numpy":
            nms_calls[key] = lambda r=raw, a=artifact: detections(
                r["boxes"][0], r["scores"][0], nms, a.letterbox, image.size
            )
    p50 = interleaved_p50(calls, iterations)
    nms_p50 = interleaved_p50(nms_calls, iterations) if nms_calls else {}
    # NMS in the graph: not separable here; the export timed both placements of the same
    # graph (NumPy NMS after it, NMS inside), on val images.
    choices = {k: a.manifest.nms_choice for k, a in loaded.items()}
    fp32 = {key: p50.get(f"{key.rsplit('-', 1)[0]}-fp32") for key in p50}
    return [
        {"set": name, "artifact": key, "p50_ms": round(value, 3),
         "vs_eager": round(value / p50["pytorch-eager"], 3),
         "vs_fp32": round(value / fp32[key], 3) if fp32[key] else None,
         "nms_where": loaded[key].manifest.nms_where if key in loaded else "torchvision",
         "nms_ms": round(nms_p50[key], 3) if key in nms_p50 else None,
         "nms_share": round(nms_p50[key] / value, 3) if key in nms_p50 else None,
         "export_numpy_p50_ms": choices[key].numpy_p50_ms if key in choices else None,
         "export_graph_p50_ms": choices[key].graph_p50_ms if key in choices else None}
        for key, value in p50.items()
    ]  # fmt: skip


def _training_speed(name: str, run: Path) -> dict:
    """One epoch of the neck and head: on cached pyramids, and through the frozen backbone
    from the image files (decode, letterbox, pyramid, head), same batches and steps."""
    from edgetl.stages.detect.run import load_detect_run, run_detector
    from edgetl.train.detector.fit import Examples, _epoch
    from edgetl.train.detector.model import DetectorHead
    from edgetl.train.detector.pyramid import flatten
    from edgetl.train.features import cached_features  # noqa: F401  (the cache is warm)

    info = load_detect_run(run)
    detector = run_detector(run, info)
    splits = info.data.load()
    images = splits.images("train")
    letterbox = info.letterbox
    started = time.perf_counter()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(images), 16):
            batch = np.stack([images.preprocessed(i, letterbox)
                              for i in range(start, min(start + 16, len(images)))])  # fmt: skip
            rows.append(flatten(detector.pyramid(torch.from_numpy(batch))).half())
    plain_features_s = time.perf_counter() - started
    head = DetectorHead(detector.detector.shape, len(info.classes), info.width, info.depth)
    examples = Examples.of(torch.cat(rows), splits.train, letterbox, head)
    optimizer = torch.optim.AdamW(head.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    started = time.perf_counter()
    _epoch(head, examples, optimizer, schedule, 16)
    cached_s = time.perf_counter() - started
    plain_s = plain_features_s + cached_s  # the plain loop runs the pyramid, then the same steps
    return {"set": name, "images": len(images), "cached_epoch_s": round(cached_s, 2),
            "plain_epoch_s": round(plain_s, 2),
            "speedup": round(plain_s / cached_s, 1)}  # fmt: skip


def _print(rows: list[dict], speed: list[dict], training: list[dict]) -> None:
    out = stdout_console()
    out.print(table(
        "test mAP (no choice was made on test): each artifact vs FP32 PyTorch",
        ["set", "artifact", "images/objects", "FP32 mAP50-95", "mAP50-95", "mAP50", "drop pts",
         "agreement", "guard chose (val bound)", "export s"],
        [[r["set"], r["artifact"], f"{r['n']}/{r['objects']}", f"{r['fp32_map50_95']:.4f}",
          f"{r['map50_95']:.4f}", f"{r['map50']:.4f}", f"{r['drop_pts']:+.2f}",
          f"{r['agreement']:.1%}", f"{r['chosen']} ({r['val_bound_pts']})", r["export_s"]]
         for r in rows],
    ))  # fmt: skip
    out.print(table(
        "batch-1 p50 with NMS (interleaved rounds, this machine)",
        ["set", "model", "p50 ms", "vs eager", "vs FP32 same runtime", "NMS where",
         "NumPy NMS ms (share)", "at export: NumPy / in-graph p50 ms"],
        [[s["set"], s["artifact"], s["p50_ms"], s["vs_eager"], s["vs_fp32"] or "-",
          s["nms_where"],
          f"{s['nms_ms']} ({s['nms_share']:.0%})" if s["nms_ms"] is not None else "-",
          f"{s['export_numpy_p50_ms']} / {s['export_graph_p50_ms']}"
          if s["export_numpy_p50_ms"] is not None else "-"] for s in speed],
    ))  # fmt: skip
    out.print(table(
        "one epoch of neck + head training",
        ["set", "train images", "cached pyramids s", "plain loop s", "speed-up"],
        [[t["set"], t["images"], t["cached_epoch_s"], t["plain_epoch_s"], f"{t['speedup']}x"]
         for t in training],
    ))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
