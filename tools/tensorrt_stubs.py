"""Make tensorrt-stubs usable by mypy: a copy in .mypy-stubs/ without the two generator bugs
of the published stubs (10.8 to 10.13) that no Python parser accepts: parameters named after
keywords (`in` in IPluginV3) are renamed, and parameters without a default that follow one
with a default (`add_scale_nd(..., power: Weights = None, channel_axis: int)`) get `= ...`.

    pip install --no-deps tensorrt-stubs   # its `tensorrt` dependency needs NVIDIA's index
    python tools/tensorrt_stubs.py && mypy
"""

from __future__ import annotations

import keyword
import re
import shutil
import sys
from importlib import util
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / ".mypy-stubs"
PARAMETER = re.compile(r"(?<=[(,]\s)(" + "|".join(keyword.kwlist) + r")(?=\s*:)")


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    return [*parts, text[start:]]


def _defaults_in_order(line: str) -> str:
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not match:
        return line
    params = _split_top_level(match.group(2))
    seen_default = False
    for index, param in enumerate(params):
        bare = param.strip()
        if bare.startswith("*"):
            break
        if "=" in bare:
            seen_default = True
        elif seen_default and bare:
            params[index] = f"{param} = ..."
    return match.group(1) + ",".join(params) + match.group(3)


def main() -> int:
    spec = util.find_spec("tensorrt_bindings")
    if spec is None or spec.submodule_search_locations is None:
        print("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs")
        return 1
    site = Path(next(iter(spec.submodule_search_locations))).parent
    shutil.rmtree(OUT, ignore_errors=True)
    fixed = 0
    for package in ("tensorrt", "tensorrt_bindings"):
        for stub in sorted((site / package).glob("*.pyi")):
            text = stub.read_text()
            new, count = PARAMETER.subn(r"\1_", text)
            new = "\n".join(_defaults_in_order(line) for line in new.splitlines()) + "\n"
            target = OUT / package / stub.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(new)
            fixed += count
    print(f"{OUT}: tensorrt stubs with {fixed} keyword-named parameters renamed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
