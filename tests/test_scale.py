"""Memory bounded by features, not images: finetune's peak RSS, measured in a fresh process
for two sizes of one synthetic set, grows with the features of the added images only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, resource, sys
from pathlib import Path
from edgetl.core.ui import make_console
from edgetl.stages.finetune import FinetuneOptions, finetune
data, out, weights = sys.argv[1:4]
info = finetune(FinetuneOptions(data=data, out=Path(out), backbone="test_efficientnet",
                weights=Path(weights), image_size=128, epochs=1, use_cache=False, workers=0,
                batch_size=16),
                make_console(quiet=True))
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": peak_kb / 1024, "images": sum(info.data.sizes.values())}))
"""


def synthetic(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(per_class)
    for label in range(2):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.jpg", quality=80)
    return root


def peak(data: Path, out: Path, weights: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), str(out), str(weights)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_peak_memory_grows_with_features_not_images(tmp_path: Path, tiny_weights: Path) -> None:
    # Both sets span many batches of 16, so the per-batch working set is the same.
    small = peak(synthetic(tmp_path / "small", 40), tmp_path / "a", tiny_weights)
    large = peak(synthetic(tmp_path / "large", 240), tmp_path / "b", tiny_weights)
    added = large["images"] - small["images"]
    # Holding the added images decoded (3 x 128 x 128 float32 each) would cost this much;
    # their features (a few hundred floats each) cost under 1 MB.
    decoded_mb = added * 3 * 128 * 128 * 4 / 2**20
    growth = large["peak_mb"] - small["peak_mb"]
    assert decoded_mb > 70
    assert growth < decoded_mb / 4, (small, large)
