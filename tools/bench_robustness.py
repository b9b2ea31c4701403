"""Robustness measured, in one run per set: camera conditions and the teacher-transfer
attack on FP32 and INT8 artifacts, a frozen backbone against `--unfreeze 2`, and a model
trained from scratch under the same attack; the cost of `--robustness` against a plain
bench of the same artifacts.

    python tools/bench_robustness.py --out DIR [--sets digits,scenes] [--budget 5]

Per set: `finetune --scratch-baseline` (frozen) and `finetune --unfreeze 2`, exports (cpu
FP32 and INT8, openvino-cpu INT8 for the frozen run; cpu FP32 for the unfrozen one),
`edgetl attack` on the frozen FP32 artifact (the public backbone and the attacker's head;
the same file serves the unfrozen run: same test images, same public weights), then one
`edgetl bench --robustness --attack` of every artifact (one table), and a plain bench of the
same artifacts for the cost. Every accuracy is on the reference set (test images, n given).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import BUILDERS  # noqa: E402
from edgetl_cli import edgetl  # noqa: E402

FROZEN = (("cpu", "fp32"), ("cpu", "int8"), ("openvino-cpu", "int8"))
BENCH = ("--iterations", "20", "--rounds", "2", "--warmup", "3", "--no-cold")


def run(data: str, out: Path, *extra: object) -> float:
    if (out / "edgetl.json").is_file():
        return 0.0
    return edgetl("finetune", "--data", data, "--out", out, "--image-size", 128, *extra)[1]


def export(run_dir: Path, target: str, precision: str, budget: float) -> Path | None:
    out = run_dir / "export" / f"{target}-{precision}"
    if (out / "manifest.json").is_file():
        return out
    extra = ["--max-accuracy-drop", budget] if precision == "int8" else []
    result, took = edgetl("export", run_dir, "--target", target, "--precision", precision,
                          "--out", out, *extra, check=False)  # fmt: skip
    if result.returncode != 0:
        print(f"  {out.name} refused ({took:.0f} s): {result.stderr.strip().splitlines()[-1]}")
        return None
    print(f"  export {run_dir.name}/{out.name}: {took:.0f} s")
    return out


def measure(name: str, work: Path, budget: float) -> None:
    data = "digits" if name == "digits" else str(BUILDERS[name](work / "data"))
    frozen, unfrozen = work / "frozen", work / "unfreeze2"
    print(
        f"{name}: finetune frozen {run(data, frozen, '--scratch-baseline'):.0f} s, "
        f"--unfreeze 2 {run(data, unfrozen, '--unfreeze', 2):.0f} s"
    )
    made = [export(frozen, t, p, budget) for t, p in FROZEN] + [
        export(unfrozen, "cpu", "fp32", budget)
    ]
    artifacts = [path for path in made if path is not None]
    attack = work / "attack.npz"
    if not attack.is_file():
        took = edgetl("attack", artifacts[0], "--out", attack)[1]
        print(f"  edgetl attack: {took:.0f} s")
    plain, plain_s = edgetl("bench", *artifacts, *BENCH, "--json", work / "plain.json")
    reports = ("--json", work / "robust.json", "--md", work / "robust.md")
    robust, robust_s = edgetl("bench", *artifacts, *BENCH, "--robustness", "--attack", attack,
                              *reports)  # fmt: skip
    print(robust.stdout)
    print(
        f"  cost: plain bench {plain_s:.0f} s, with --robustness {robust_s:.0f} s "
        f"({robust_s / plain_s:.1f}x) for {len(artifacts)} artifacts"
    )
    summary(json.loads((work / "robust.json").read_text()), name)


def summary(report: dict, name: str) -> None:
    """One line per artifact: clean, mean corrupted, attacked per epsilon (Markdown)."""
    print(f"\n| {name} | n | clean | mean corrupted | attack 2/255 | 4/255 | 8/255 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    scratch: dict[str, float] = {}
    for entry in report["results"]:
        robust = entry["robustness"]
        attacked = {f"{c['level']:g}": c["score"] for c in robust["attack"]}
        cells = [f"{attacked.get(e, float('nan')):.1%}" for e in ("2", "4", "8")]
        print(f"| {entry['artifact'].split('/', 3)[-1]} | {robust['n']} | "
              f"{robust['clean']:.1%} | {robust['mean_corrupted']:.1%} | "
              + " | ".join(cells) + " |")  # fmt: skip
        scratch = (robust.get("attack_info") or {}).get("scratch") or scratch
    if scratch:
        cells = [f"{scratch.get(e, float('nan')):.1%}" for e in ("2", "4", "8")]
        clean = f"{scratch['clean']:.1%}"
        print(f"| from scratch (torch) | | {clean} | - | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sets", default="digits,scenes")
    parser.add_argument("--budget", type=float, default=5.0, help="INT8 budget (points)")
    args = parser.parse_args()
    for name in args.sets.split(","):
        work = args.out / name
        work.mkdir(parents=True, exist_ok=True)
        measure(name, work, args.budget)


if __name__ == "__main__":
    main()
