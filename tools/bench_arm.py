"""ARM answers against x86 answers, and ExecuTorch against ONNX Runtime, in one run.

For each set: fine-tune EfficientNet-Lite0, export cpu (ONNX Runtime) and arm-cpu
(ExecuTorch .pte) in FP32 and INT8, bench them all on this x86 host (one interleaved run:
p50 ratios side by side), then on the emulated arm64 lab device (tools/arm_device.py) with
the host's report as the baseline: each artifact's top-1 there and the share of images
given the host's answer. Latency on the emulated device means nothing and is not printed.

    python tools/bench_arm.py --out DIR [--sets digits,photos] [--budget 5]
        [--lab devices.toml] [--no-device] [--no-pte-on-device]

Every accuracy is on the run's reference set (test images: no choice was made on them).
The .pte on the device needs ExecuTorch there, whose Python runtime brings torch: the first
such bench installs it into the device's managed env (minutes, GBs); --no-pte-on-device
skips it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import BUILDERS  # noqa: E402
from edgetl_cli import edgetl  # noqa: E402

ARTIFACTS = (("cpu", "fp32"), ("cpu", "int8"), ("arm-cpu", "fp32"), ("arm-cpu", "int8"))


def prepare(name: str, work: Path, budget: float) -> tuple[list[Path], dict[str, float]]:
    data = "digits" if name == "digits" else str(BUILDERS[name](work / "data"))
    run = work / "run"
    if not (run / "edgetl.json").is_file():
        edgetl("finetune", "--data", data, "--out", run, "--image-size", 128)
    made, seconds = [], {}
    for target, precision in ARTIFACTS:
        out = run / "export" / f"{target}-{precision}"
        if not (out / "manifest.json").is_file():
            extra = ["--max-accuracy-drop", budget] if precision == "int8" else []
            result, took = edgetl("export", run, "--target", target, "--precision", precision,
                                  "--out", out, *extra, check=False)  # fmt: skip
            seconds[out.name] = took
            if result.returncode != 0:
                print(f"{name}: {out.name} refused: {result.stderr.strip().splitlines()[-1]}")
                continue
        made.append(out)
    return made, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sets", default="digits,photos")
    parser.add_argument("--budget", type=float, default=5.0, help="INT8 budget (points)")
    parser.add_argument("--lab", type=Path, default=None, help="default: arm_device.py up")
    parser.add_argument("--no-device", action="store_true")
    parser.add_argument("--no-pte-on-device", action="store_true")
    args = parser.parse_args()
    lab = args.lab
    if lab is None and not args.no_device:
        lab = args.out / "devices.toml"
        args.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, str(Path(__file__).with_name("arm_device.py")), "up",
                        "--lab", str(lab)], check=True)  # fmt: skip
        print(f"arm_device.py up: {time.perf_counter() - started:.1f} s")
    for name in args.sets.split(","):
        work = args.out / name
        work.mkdir(parents=True, exist_ok=True)
        made, seconds = prepare(name, work, args.budget)
        print(
            f"\n## {name}: export wall s " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        )
        host = work / "host.json"
        result, took = edgetl("bench", *made, "--rounds", 10, "--json", host)
        print(result.stdout[-4000:])
        print(f"host bench: {took:.0f} s")
        if args.no_device:
            continue
        on_device = [a for a in made if not (args.no_pte_on_device and "arm-cpu" in a.name)]
        lab_json = work / "arm64.json"
        result, took = edgetl("bench", *on_device, "--on", "arm64", "--lab", lab,
                              "--baseline", host, "--max-accuracy-drop", 100, "--json", lab_json,
                              "--iterations", 5, "--no-cold", check=False)  # fmt: skip
        print(f"bench --on arm64: {took:.0f} s (exit {result.returncode})")
        summary(host, lab_json)


def summary(host: Path, lab_json: Path) -> None:
    hosts = {e["name"]: e for e in json.loads(host.read_text())["results"]}
    (run,) = json.loads(lab_json.read_text())["devices"]
    if run["report"] is None:
        print(f"arm64 failed: {run['reason']}")
        return
    print("| artifact | n | top-1 x86 | top-1 arm64 | same answers as x86 | differ |")
    print("|---|---:|---:|---:|---:|---:|")
    for entry in run["report"]["results"]:
        base = hosts[entry["name"]]
        check = entry["checks"].get("accuracy") or {}
        same = check.get("same_answers", float("nan"))
        print(f"| {entry['name']} | {entry['accuracy']['n']} | "
              f"{base['accuracy']['top1']:.2%} | {entry['accuracy']['top1']:.2%} | "
              f"{same:.1%} | {check.get('differing')} |")  # fmt: skip


if __name__ == "__main__":
    main()
