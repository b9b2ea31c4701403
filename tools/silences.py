"""The longest silences of a command: the gaps between the lines it prints, piped (as CI
and log files see it). Rich's progress bars redraw on a terminal only; piped, every step
of more than a few seconds must still print a line.

    python tools/silences.py [--top 5] -- edgetl export RUN --target cpu --precision int8
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = last = time.monotonic()
    gaps: list[tuple[float, str]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            now = time.monotonic()
            gaps.append((now - last, line.rstrip()[:100]))
            last = now
    gaps.append((time.monotonic() - last, "(exit)"))
    print(f"{len(gaps)} lines in {time.monotonic() - started:.1f} s, exit {process.returncode}")
    for gap, line in sorted(gaps, reverse=True)[: args.top]:
        print(f"{gap:7.1f} s before: {line}")
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
