"""An application server calls `predict` from many threads: every runtime that runs here must
give each call its own image's answer, exactly as serial calls do."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_BUDGET, export_cli, make_image

THREADS = 8
IMAGES = 200


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [make_image(rng, i % 3, (48 + i % 17, 40 + i % 23)) for i in range(IMAGES)]


@pytest.mark.parametrize(
    ("target", "precision"),
    [("cpu", "fp32"), ("openvino-cpu", "fp32"), ("openvino-cpu", "int8")],
)
def test_predict_from_eight_threads_matches_serial(
    tiny_run: Path, tmp_path: Path, images: list[Image.Image], target: str, precision: str
) -> None:
    import edgetl

    out = tmp_path / f"{target}-{precision}"
    budget = TINY_BUDGET if precision == "int8" else ()
    result = export_cli(tiny_run, out, "--target", target, "--precision", precision, *budget)
    assert result.exit_code == 0, result.output
    model = edgetl.load(out)

    def probabilities(image: Image.Image) -> np.ndarray:
        ranked = model.predict(image, top_k=len(model.classes))
        return np.asarray([p.probability for p in sorted(ranked, key=lambda p: p.index)])

    serial = [probabilities(image) for image in images]
    # Distinct images give distinct outputs, so an answer for another image would show.
    assert len({tuple(np.round(p, 6)) for p in serial}) > IMAGES // 2
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = list(pool.map(probabilities, images))
    for index, (alone, together) in enumerate(zip(serial, threaded, strict=True)):
        np.testing.assert_allclose(together, alone, atol=1e-6, err_msg=f"image {index}")
