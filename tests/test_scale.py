"""Scale: memory bounded by features, not images (finetune's peak RSS for two sizes of one
synthetic set, in fresh processes), and torchrun ranks sharing the extraction."""

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
from edgetl.stages.finetune import FinetuneOptions, finetune
data, out, weights = sys.argv[1:4]
info = finetune(FinetuneOptions(data=data, out=Path(out), backbone="test_efficientnet",
                weights=Path(weights), image_size=128, epochs=1, no_cache=True, workers=0,
                batch_size=16))
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


def shard_rows(cache: Path) -> dict[tuple[str, bytes], np.ndarray]:
    """(namespace, content digest) -> row: a mirrored view shares its image's digest."""
    from safetensors.numpy import load_file

    rows: dict[tuple[str, bytes], np.ndarray] = {}
    for shard in cache.glob("v1/*/shards/*.safetensors"):
        tensors = load_file(str(shard))
        for digest, row in zip(tensors["digests"], tensors["features"], strict=True):
            rows[(shard.parent.parent.name, digest.tobytes())] = row
    return rows


def one_and_two_ranks(common: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`edgetl finetune` in one process (RUN one, cache1), then under `--nproc 2` (RUN two,
    cache2); the two-rank launch, both having passed."""
    import os

    single = subprocess.run(
        [sys.executable, "-m", "edgetl", "finetune", *common, "--out", str(tmp_path / "one"),
         "--cache-dir", str(tmp_path / "cache1")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ranks = subprocess.run(
        [sys.executable, "-m", "edgetl", "finetune", *common, "--out", str(tmp_path / "two"),
         "--cache-dir", str(tmp_path / "cache2"), "--nproc", "2"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert ranks.returncode == 0, ranks.stdout + ranks.stderr
    return ranks


def test_torchrun_two_ranks_give_the_rows_and_head_of_one_process(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """A real `torchrun --nproc-per-node 2` launch (gloo on CPU): each rank extracts its
    share into its own shard; rank 0 trains the head. Same rows, same head as one process."""
    from safetensors.numpy import load_file

    from tests.conftest import write_folder

    data = write_folder(tmp_path / "photos", per_class=8)
    common = ["--data", str(data), "--backbone", "test_efficientnet", "--weights",
              str(tiny_weights), "--image-size", "64", "--epochs", "3", "--seed", "3"]  # fmt: skip
    ranks = one_and_two_ranks(common, tmp_path)
    assert "feature cache: 0 cached, 24 new" in " ".join((ranks.stdout + ranks.stderr).split())
    shards = list((tmp_path / "cache2").glob("v1/*/shards/*.safetensors"))
    sizes = sorted(len(load_file(str(shard))["digests"]) for shard in shards)
    assert sizes == [12, 12]  # each rank extracted its half, into a shard of its own
    one, two = shard_rows(tmp_path / "cache1"), shard_rows(tmp_path / "cache2")
    assert set(one) == set(two) and len(one) == 24
    assert all(np.allclose(one[d], two[d], atol=1e-5) for d in one)
    head_one = load_file(str(tmp_path / "one" / "head.safetensors"))
    head_two = load_file(str(tmp_path / "two" / "head.safetensors"))
    assert all(np.allclose(head_one[k], head_two[k], atol=1e-4) for k in head_one)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


def unfreeze_one_and_two_ranks(data: Path, tmp_path: Path, weights: Path) -> dict[str, dict]:
    """`finetune --unfreeze 1` of `data` (12 train images in batches of 11) in one process
    (RUN one) and under a real two-rank torchrun launch (RUN two) whose ranks count the
    images each DDP forward is given (test instrumentation only: rankN files); each run's
    edgetl.json."""
    import os

    common = ["finetune", "--data", str(data), "--backbone", "test_efficientnet", "--weights",
              str(weights), "--image-size", "64", "--epochs", "2", "--seed", "3",
              "--unfreeze", "1", "--batch-size", "11"]  # fmt: skip
    counting = tmp_path / "counting.py"
    counting.write_text(DDP_COUNTER)
    launches = {
        "one": [sys.executable, "-m", "edgetl"],
        "two": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", str(counting)],
    }  # fmt: skip
    runs = {}
    for name, launch in launches.items():
        result = subprocess.run(
            [*launch, *common, "--out", str(tmp_path / name),
             "--cache-dir", str(tmp_path / f"cache-{name}")],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "OMP_NUM_THREADS": "1", "COUNTS": str(tmp_path / "rank")},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        runs[name] = json.loads((tmp_path / name / "edgetl.json").read_text())
    return runs


DDP_COUNTER = """
import atexit, json, os, sys
import torch.nn.parallel as parallel
from edgetl.cli import main
seen = []
forward = parallel.DistributedDataParallel.forward
def counted(self, x, *args, **kwargs):
    seen.append(len(x))
    return forward(self, x, *args, **kwargs)
parallel.DistributedDataParallel.forward = counted
path = os.environ["COUNTS"] + os.environ["RANK"]
atexit.register(lambda: open(path, "w").write(json.dumps(seen)))
main()
"""


def test_torchrun_unfreeze_trains_with_ddp_like_one_process(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """`--unfreeze 1 --nproc 2`: both ranks fine-tune with DistributedDataParallel, each on
    its share of every batch (12 train images in batches of 11: shares of 6 and 5, then a
    last batch of one image, so rank 1 runs an empty share); the weights match one process's."""
    from safetensors.numpy import load_file

    from tests.conftest import write_folder

    data = write_folder(tmp_path / "photos", per_class=8)
    runs = unfreeze_one_and_two_ranks(data, tmp_path, tiny_weights)
    assert runs["one"]["data"]["sizes"]["train"] == 12
    # Per epoch rank 0 ran 6 + 1 images, rank 1 ran 5 + the padded one; the val forwards
    # go to the model itself, not through DDP.
    counts = [json.loads((tmp_path / f"rank{r}").read_text()) for r in (0, 1)]
    assert counts == [[6, 1, 6, 1], [5, 1, 5, 1]]
    history = (tmp_path / "two" / "history.csv").read_text().splitlines()
    one_history = (tmp_path / "one" / "history.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in history] == [row.split(",")[:2] for row in one_history]
    # Train loss and top-1 are summed over the ranks: the figures of the one process.
    for row, one_row in zip(history[1:], one_history[1:], strict=True):
        assert np.allclose(
            [float(v) for v in row.split(",")[2:]],
            [float(v) for v in one_row.split(",")[2:]],
            atol=1e-4,
        ), (row, one_row)
    assert sum(row.startswith("unfreeze,") for row in history) == 2
    for weights in ("head.safetensors", "backbone.safetensors"):
        one = load_file(str(tmp_path / "one" / weights))
        two = load_file(str(tmp_path / "two" / weights))
        assert all(np.allclose(one[k], two[k], atol=1e-4) for k in one), weights
    before = load_file(str(tiny_weights))
    after = load_file(str(tmp_path / "two" / "backbone.safetensors"))
    assert any(not np.array_equal(before[k], after[k]) for k in before if k in after)
    assert runs["two"]["metrics"]["val_top1"] == runs["one"]["metrics"]["val_top1"]


def write_shards(root: Path, shards: int = 2, per_class: int = 6) -> str:
    """WebDataset-style tar shards: KEY.jpg + KEY.cls, three classes spread over the shards."""
    import io
    import tarfile

    from tests.conftest import make_image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    samples = [(label, index) for label in range(3) for index in range(per_class)]
    for shard in range(shards):
        with tarfile.open(root / f"train-{shard:04d}.tar", "w") as tar:
            for label, index in samples[shard::shards]:
                buffer = io.BytesIO()
                make_image(rng, label, (60, 50)).save(buffer, format="JPEG", quality=90)
                for suffix, data in (("jpg", buffer.getvalue()), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"s{label}_{index:03d}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (root / "classes.txt").write_text("cat\ndog\nowl\n")
    return str(root / f"train-{{0000..{shards - 1:04d}}}.tar")


def test_tar_shards_are_read_in_place(tmp_path: Path, tiny_weights: Path) -> None:
    """`--data 'shards/train-{0000..0001}.tar'`: streamed from the tars (never unpacked),
    split like a flat folder, cached per image; later stages rebuild the splits from it."""
    import pytest
    from click.testing import CliRunner

    from edgetl.cli import main
    from edgetl.core.data.dataset import load_dataset
    from edgetl.core.errors import EdgetlError

    spec = write_shards(tmp_path / "shards")
    splits = load_dataset(spec)
    assert (
        splits.classes == ["cat", "dog", "owl"]
        and len(splits.train) + len(splits.val) + len(splits.test) == 18
    )
    image = splits.train.image(0)
    assert image.size == (60, 50) and not list((tmp_path / "shards").glob("*.jpg"))
    common = ["finetune", "--data", spec, "--backbone", "test_efficientnet", "--weights",
              str(tiny_weights), "--image-size", "64", "--epochs", "2",
              "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    first = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "run"), "--json"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "again"), "--json"])
    assert second.exit_code == 0 and '"feature_cache": "hit"' in second.output
    exported = CliRunner().invoke(
        main, ["export", str(tmp_path / "run"), "--target", "cpu", "--out", str(tmp_path / "a")]
    )
    assert exported.exit_code == 0, exported.output
    with pytest.raises(EdgetlError, match="no such shard"):
        load_dataset(str(tmp_path / "shards" / "train-{0000..0003}.tar"))


def test_torchrun_two_ranks_extract_a_detection_sets_pyramids_like_one_process(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """`--nproc 2` on a YOLO set: each rank extracts its share of both cached views (the
    images and train's mirror) into shards of its own; rank 0 trains. Same rows and the same
    detector as one process."""
    from safetensors.numpy import load_file

    from edgetl.core.data.scenes import make_scenes

    data = make_scenes(tmp_path / "scenes", sizes={"train": 12, "val": 6, "test": 6})
    common = ["--data", str(data), "--backbone", "test_efficientnet", "--weights",
              str(tiny_weights), "--image-size", "64", "--epochs", "2", "--seed", "3"]  # fmt: skip
    one_and_two_ranks(common, tmp_path)
    shards = list((tmp_path / "cache2").glob("v1/*/shards/*.safetensors"))
    sizes = sorted(len(load_file(str(shard))["digests"]) for shard in shards)
    assert sizes == [6, 6, 12, 12]  # each rank: half the mirrored train view, half of all 24
    one, two = shard_rows(tmp_path / "cache1"), shard_rows(tmp_path / "cache2")
    assert set(one) == set(two) and len(one) == 24 + 12
    choices = [sorted(json.loads(p.read_text())["dtype"]
                      for p in (tmp_path / f"cache{n}").glob("v1/*/precision.json"))
               for n in (1, 2)]  # fmt: skip
    assert choices[0] == choices[1] and len(choices[0]) == 2  # both views, the same choice
    # Rows narrowed to float16 may round a last float32 bit apart: one float16 step (2e-3 <= 4).
    assert all(np.allclose(one[d], two[d], rtol=1e-3, atol=2e-3) for d in one)
    head_one = load_file(str(tmp_path / "one" / "detector.safetensors"))
    head_two = load_file(str(tmp_path / "two" / "detector.safetensors"))
    assert all(np.allclose(head_one[k], head_two[k], atol=1e-4) for k in head_one)


def test_torchrun_unfreeze_of_a_detector_trains_with_ddp_like_one_process(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """`--unfreeze 1 --nproc 2` on a YOLO set: both ranks fine-tune the pyramid's last stage
    and the head under DistributedDataParallel, each on its share of every batch (12 train
    images, each as is or mirrored, in batches of 11: shares of 6 and 5, then a last batch
    of one, so rank 1 runs a stand-in at weight 0), val split and gathered; the history and
    the weights are one process's."""
    from safetensors.numpy import load_file

    from edgetl.core.data.scenes import make_scenes

    data = make_scenes(tmp_path / "scenes", sizes={"train": 12, "val": 6, "test": 6})
    unfreeze_one_and_two_ranks(data, tmp_path, tiny_weights)
    counts = [json.loads((tmp_path / f"rank{r}").read_text()) for r in (0, 1)]
    assert counts == [[6, 1, 6, 1], [5, 1, 5, 1]]
    history = (tmp_path / "two" / "history.csv").read_text().splitlines()
    one_history = (tmp_path / "one" / "history.csv").read_text().splitlines()
    assert sum(row.endswith(",unfreeze 1") for row in history) == 2, history
    for row, one_row in zip(history[1:], one_history[1:], strict=True):
        two_values, one_values = row.split(","), one_row.split(",")
        assert (two_values[0], two_values[-1]) == (one_values[0], one_values[-1])
        # val mAP50-95 and mAP50 (the loss logged is rank 0's share's)
        two_map = [float(v) for v in two_values[2:4]]
        assert np.allclose(two_map, [float(v) for v in one_values[2:4]], atol=1e-3), row
    for weights in ("detector.safetensors", "pyramid.safetensors"):
        one = load_file(str(tmp_path / "one" / weights))
        two = load_file(str(tmp_path / "two" / weights))
        assert all(np.allclose(one[k], two[k], atol=1e-4) for k in one), weights


FAILING_RANK = """
import os
import edgetl.stages.finetune.stage as stage
from edgetl.cli import main
if os.environ["RANK"] == "1":
    def broken(*args, **kwargs):
        raise RuntimeError("rank 1 broke on purpose")
    stage._extract_share = broken
main()
"""


def test_a_rank_that_fails_ends_the_launch_instead_of_hanging_it(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """An error on one rank used to leave it waiting at the final barrier and rank 0 in its
    next collective, forever; now the failing rank leaves the group at once, rank 0's next
    collective fails, and the launch exits non-zero with the rank's error."""
    import os

    from tests.conftest import write_folder

    data = write_folder(tmp_path / "photos", per_class=4)
    script = tmp_path / "failing.py"
    script.write_text(FAILING_RANK)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), "finetune", "--data", str(data), "--backbone", "test_efficientnet",
         "--weights", str(tiny_weights), "--image-size", "64", "--epochs", "1",
         "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "rank 1 broke on purpose" in result.stdout + result.stderr
    assert not (tmp_path / "run" / "edgetl.json").exists()
