"""How often each upper bound on a paired top-1 drop covers the true drop: the measurement
behind core/measures/evidence.py's choice of bound.

Each case draws, many times, n images whose (reference right, candidate wrong) and
(reference wrong, candidate right) outcomes occur at the true rates `worse` and `better`
(the true drop is worse - better), and asks each bound at the confidence whether it lies at
or above the true drop. A bound is honest when it covers at least `confidence` of the
draws; among honest bounds the tighter (smaller mean) is better.

    python tools/bound_coverage.py [--draws 4000] [--confidence 0.9] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from edgetl.core.measures.evidence import PairedDrop, binomial_upper

# (n, true worse rate, true better rate): the quickstart's val size with the INT8 test
# disagreement it showed (3.6% worse, ~0.6% better), smaller and balanced ones, and a
# larger set.
CASES = [
    (359, 0.036, 0.006),
    (359, 0.012, 0.002),
    (359, 0.005, 0.0),
    (359, 0.004, 0.004),
    (359, 0.0015, 0.0),
    (2000, 0.012, 0.004),
]


def mcnemar_exact(worse: int, better: int, n: int, confidence: float) -> float:
    """Exact binomial on the discordant pairs, conditional on their count."""
    discordant = worse + better
    if discordant == 0:
        return 0.0
    share = binomial_upper(worse, discordant, confidence)
    return 100.0 * discordant / n * (2 * share - 1)


def bootstrap(worse: int, better: int, n: int, confidence: float, rng, resamples=400) -> float:
    """Paired percentile bootstrap of the drop."""
    draws = rng.multinomial(n, [worse / n, better / n, 1 - (worse + better) / n], resamples)
    drops = 100.0 * (draws[:, 0] - draws[:, 1]) / n
    return float(np.quantile(drops, confidence))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    conf = args.confidence
    print(f"coverage of the true drop at confidence {conf} ({args.draws} draws per case)")
    print(f"{'n':>5} {'worse':>6} {'better':>6} {'drop':>6}   "
          f"{'exact (ours)':>16} {'McNemar cond.':>16} {'bootstrap':>16}")  # fmt: skip
    for n, worse_rate, better_rate in CASES:
        truth = 100.0 * (worse_rate - better_rate)
        draws = rng.multinomial(n, [worse_rate, better_rate, 1 - worse_rate - better_rate],
                                args.draws)  # fmt: skip
        cache: dict[tuple[int, int], tuple[float, float, float]] = {}
        bounds = []
        for worse, better, _ in draws:
            key = (int(worse), int(better))
            if key not in cache:
                cache[key] = (
                    PairedDrop(n, *key).upper_pts(conf),
                    mcnemar_exact(*key, n, conf),
                    bootstrap(*key, n, conf, rng),
                )
            bounds.append(cache[key])
        found = np.asarray(bounds)
        cells = [f"{(found[:, i] >= truth - 1e-9).mean():6.1%} ({found[:, i].mean():5.2f})"
                 for i in range(3)]  # fmt: skip
        print(f"{n:5d} {worse_rate:6.2%} {better_rate:6.2%} {truth:6.2f}   " + " ".join(
            f"{cell:>16}" for cell in cells))  # fmt: skip
    print("each cell: share of draws whose bound covers the true drop (mean bound, points)")


if __name__ == "__main__":
    main()
