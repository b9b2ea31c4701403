"""One top-1, ties broken one way everywhere: a quicksort broke ties at random, so the bench's
top-1 (through top-k) and export's (through argmax) disagreed on tied logits."""

from __future__ import annotations

import numpy as np

from edgetl.core.measures.metrics import agreement, predicted, ranked, top1, topk
from edgetl.stages.bench.accuracy import accuracy_report


def test_tied_logits_give_one_top1_everywhere() -> None:
    rng = np.random.default_rng(0)
    # 400 images, 10 classes, every logit one of three values: ties in most rows (as an
    # INT8 model's coarse logits have).
    logits = rng.integers(0, 3, (400, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 400)
    expected = float((logits.argmax(1) == labels).mean())  # ties: the lower class index
    assert top1(logits, labels) == topk(logits, labels, 1) == expected
    report = accuracy_report(logits, labels, logits, [str(i) for i in range(10)], [])
    assert report.top1 == expected and report.agreement == 1.0
    assert np.array_equal(ranked(logits, 1)[:, 0], predicted(logits))
    assert agreement(logits, logits[:, ::-1][:, ::-1]) == 1.0


def test_ranked_keeps_the_lower_index_first_among_equals() -> None:
    scores = np.asarray([0.1, 0.4, 0.4, 0.1, 0.4])
    assert ranked(scores, 3).tolist() == [1, 2, 4]
    assert ranked(scores, 10).tolist() == [1, 2, 4, 0, 3]  # k past the classes: all of them
