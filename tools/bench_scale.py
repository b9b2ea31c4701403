"""Feature extraction at scale, side by side in one run (ratios, not milliseconds, compare).

On a synthetic folder of photo-sized JPEGs (default 5,000 at 500x375, two classes) with
EfficientNet-Lite0 at 224 px:

- B: the backbone alone on pre-decoded tensors (a sample, scaled to N images): the floor.
- E: edgetl's extraction from the files (header-only scan, then one decode on DataLoader
  workers), no cache.
- O: the previous code path: a full decode of every image while scanning, then a serial
  extraction that decodes each image again (workers=0), no cache.
- cold: a whole `finetune` with an empty cache; rerun: the same after adding 1% new images.

    python tools/bench_scale.py [--images 5000] [--workers N] [--rss]

--rss also measures finetune's peak RSS (fresh processes, no cache) at N/4 and N images.
--rss-only SIZES measures only that, at each image count (e.g. 5000,20000), at --rss-px
pixels (the per-batch working set is the same for every count; features are 1280 floats
per image at any input size, so a smaller input only makes the run shorter).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgetl.core.data.dataset import load_dataset
from edgetl.core.images import read_image
from edgetl.core.ui import stdout_console, table
from edgetl.stages.finetune import FinetuneOptions, finetune
from edgetl.train.backbones import load_backbone
from edgetl.train.extract import default_workers
from edgetl.train.features import cached_features

SIZE = 224


def make_photos(root: Path, count: int, start: int = 0) -> Path:
    """`count` JPEGs of 500x375 (smooth gradients plus noise: photo-like sizes on disk)."""
    rng = np.random.default_rng(start)
    base = np.linspace(0, 255, 500, dtype=np.float32)[None, :, None]
    for index in range(start, start + count):
        label = index % 2
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        noise = rng.normal(0, 25, (375, 500, 3)).astype(np.float32)
        pixels = np.clip(base * (0.5 + label) * 0.7 + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:06d}.jpg", quality=85)
    return root


def backbone_alone(data: Path, count: int, sample: int = 256) -> float:
    """Seconds for `count` images through the backbone on tensors decoded beforehand."""
    backbone = load_backbone("efficientnet_lite0", image_size=SIZE)
    splits = load_dataset(str(data))
    images = splits.train.sample(sample, 0)
    tensors = torch.from_numpy(images.arrays(backbone.preprocess))
    model = backbone.model.eval().to(memory_format=torch.channels_last)
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tensors), 64):
            model(tensors[i : i + 64].contiguous(memory_format=torch.channels_last))
    return (time.perf_counter() - started) * count / len(tensors)


def edgetl_extraction(data: Path, workers: int, old_path: bool) -> float:
    """Seconds to scan and extract every image, without a cache (O: the old path)."""
    started = time.perf_counter()
    splits = load_dataset(str(data))
    if old_path:  # the scan decoded every image fully before extraction decoded it again
        for part in (splits.train, splits.val, splits.test):
            for index in range(len(part)):
                read_image(data / part.keys[index])
    backbone = load_backbone("efficientnet_lite0", image_size=SIZE)
    cached_features(backbone, splits, torch.device("cpu"), 64, workers, None)
    return time.perf_counter() - started


def finetune_wall(data: Path, out: Path, cache: Path, workers: int) -> tuple[float, str]:
    started = time.perf_counter()
    info = finetune(
        FinetuneOptions(data=str(data), out=out, image_size=SIZE, epochs=10, cache_dir=cache,
                        workers=workers, force=True))  # fmt: skip
    assert info is not None
    return time.perf_counter() - started, str(info.metrics.feature_cache)


RSS_CHILD = """
import json, resource, sys
from pathlib import Path
from edgetl.stages.finetune import FinetuneOptions, finetune
info = finetune(FinetuneOptions(data=sys.argv[1], out=Path(sys.argv[2]),
                image_size=int(sys.argv[3]), epochs=1, no_cache=True))
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "images": sum(info.data.sizes.values()), "features": info.backbone.num_features}))
"""


def peak_rss(data: Path, out: Path, px: int = SIZE) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(data), str(out), str(px)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--rss-only", default=None, help="Image counts, e.g. 5000,20000.")
    parser.add_argument("--rss-px", type=int, default=SIZE)
    args = parser.parse_args()
    if args.rss_only:
        rss_only([int(n) for n in args.rss_only.split(",")], args.rss_px)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgetl-bench-scale-") as scratch:
        work = Path(scratch)
        data = make_photos(work / "photos", args.images)
        b = backbone_alone(data, args.images)
        e = edgetl_extraction(data, args.workers, old_path=False)
        o = edgetl_extraction(data, 0, old_path=True)
        cold, cold_state = finetune_wall(data, work / "run", work / "cache", args.workers)
        make_photos(data, max(1, args.images // 100), start=args.images)
        rerun, rerun_state = finetune_wall(data, work / "run", work / "cache", args.workers)
        rows += [
            ["B: backbone on decoded tensors", f"{b:.1f}", "1.00"],
            [f"E: edgetl extraction ({args.workers} workers)", f"{e:.1f}", f"{e / b:.2f}"],
            ["O: previous path (decode twice, serial)", f"{o:.1f}", f"{o / b:.2f}"],
            [f"cold finetune ({cold_state})", f"{cold:.1f}", f"{cold / b:.2f}"],
            [f"+1% images ({rerun_state})", f"{rerun:.1f}", f"{rerun / b:.2f}"],
        ]
        summary = (
            f"E/O {e / o:.2f} (goal <= 0.6), E/B {e / b:.2f} (goal <= 1.3), cold finetune / E "
            f"{cold / e:.2f} (goal <= 1.15), +1% re-run / cold extraction {rerun / e:.1%} "
            "(goal <= 5% plus process start)"
        )
        if args.rss:
            quarter = make_photos(work / "quarter", args.images // 4)
            small, large = peak_rss(quarter, work / "q"), peak_rss(data, work / "f")
            added = large["images"] - small["images"]
            feature_mb = added * large["features"] * 4 / 2**20
            growth = large["peak_mb"] - small["peak_mb"]
            summary += (
                f"; peak RSS {small['peak_mb']:.0f} MB at {small['images']:.0f} images, "
                f"{large['peak_mb']:.0f} MB at {large['images']:.0f}: growth {growth:.0f} MB "
                f"for {feature_mb:.0f} MB of features ({growth / feature_mb:.2f}x, goal <= 1.5x)"
            )
    console = stdout_console()
    console.print(
        table(
            f"feature extraction, {args.images} JPEGs 500x375 at {SIZE} px, "
            f"EfficientNet-Lite0, {default_workers()} cores",
            ["what", "seconds", "x B"],
            rows,
        )
    )
    console.print(summary)


def rss_only(counts: list[int], px: int) -> None:
    """Peak RSS of a cache-less finetune at each image count, growth against features."""
    rows, first = [], None
    with tempfile.TemporaryDirectory(prefix="edgetl-bench-rss-") as scratch:
        data = Path(scratch) / "photos"
        made = 0
        for count in sorted(counts):
            make_photos(data, count - made, start=made)
            made = count
            found = peak_rss(data, Path(scratch) / f"run-{count}", px)
            first = first or found
            added = found["images"] - first["images"]
            feature_mb = added * found["features"] * 4 / 2**20
            growth = found["peak_mb"] - first["peak_mb"]
            ratio = f"{growth / feature_mb:.2f}x" if feature_mb else "-"
            rows.append([f"{found['images']:.0f}", f"{found['peak_mb']:.0f}", f"{growth:.0f}",
                         f"{feature_mb:.0f}", ratio])  # fmt: skip
    stdout_console().print(
        table(
            f"finetune peak RSS (fresh process, no cache, EfficientNet-Lite0 at {px} px)",
            ["images", "peak MB", "growth MB", "features added MB (float32)", "growth / features"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
