"""`finetune --unfreeze auto` against running each K by hand (`--unfreeze 0`, `1`, `2`),
in one run: every K's val and test top-1 and wall time, the K auto kept, and its wall time
against the sum of the hand runs.

    python tools/bench_unfreeze.py [--sets photos,patches] [--image-size 96] [--epochs 8]

The sets come from tools/datasets.py (scikit-image's pictures, offline): `photos` (six
colour photographs, where ImageNet features should be enough) and `patches` (where in a
grayscale texture a crop comes from: far from ImageNet's classes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import BUILDERS  # noqa: E402

from edgetl.core.ui import stdout_console, table  # noqa: E402


def finetune(data: Path, out: Path, cache: Path, unfreeze: str, args: argparse.Namespace):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "edgetl", "finetune", "--data", str(data), "--out", str(out),
         "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--cache-dir",
         str(cache), "--unfreeze", unfreeze],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"finetune --unfreeze {unfreeze} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started, json.loads((out / "edgetl.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="photos,patches")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    console = stdout_console()
    with tempfile.TemporaryDirectory(prefix="edgetl-bench-unfreeze-") as tmp:
        root = Path(tmp)
        for name in args.sets.split(","):
            data = root / name
            BUILDERS[name](data, seed=0)
            cache = root / f"cache-{name}"
            finetune(data, root / f"{name}-warm", cache, "0", args)  # features cached first
            rows, by_hand = [], 0.0
            for k in ("0", "1", "2"):
                wall, run = finetune(data, root / f"{name}-k{k}", cache, k, args)
                by_hand += wall
                rows.append([f"--unfreeze {k}", f"{run['metrics']['val_top1']:.2%}",
                             f"{run['metrics']['test_top1']:.2%}", f"{wall:.0f}", ""])  # fmt: skip
            wall, run = finetune(data, root / f"{name}-auto", cache, "auto", args)
            found = run["metrics"]["unfreeze_auto"]
            rows.append([f"--unfreeze auto (kept K={found['chosen']})",
                         f"{run['metrics']['val_top1']:.2%}", f"{run['metrics']['test_top1']:.2%}",
                         f"{wall:.0f}", f"{wall / by_hand:.2f}x the hand runs"])  # fmt: skip
            sizes = run["data"]["sizes"]
            title = (
                f"{name}: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test, "
                f"EfficientNet-Lite0 at {args.image_size} px, {args.epochs} epochs"
            )
            console.print(table(title, ["run", "val top-1", "test top-1", "wall s", ""], rows))
            trials = ", ".join(f"K={t['stages']} {t['val_top1']:.2%}" for t in found["trials"])
            console.print(f"auto's val per K: {trials}; {found['finding']}")


if __name__ == "__main__":
    main()
