"""`edgetl search --on DEVICE`: latency probes timed on a lab device."""

from __future__ import annotations

import json
from pathlib import Path

from edgetl.backends.probe import BUILD_OUTPUTS, Probe, TimedArch
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.timing import Latency
from edgetl.stages.lab.labfile import find_lab, read_lab
from edgetl.stages.lab.remote import Remote
from edgetl.stages.lab.ssh import DeviceFault, multiplexed


def time_on(
    folders: dict[str, Path],
    backend: str,
    on: str,
    lab_file: Path | None,
    iterations: int,
) -> dict[str, TimedArch]:
    """Each probe folder copied to the device `on` (once, by content) and all timed there
    in one interleaved run; a device fault is exit 2 (the search cannot go on without it)."""
    lab = read_lab(find_lab(lab_file))
    devices = lab.select(on)
    if len(devices) != 1:
        raise EdgetlError(f"--on {on}: give the one device the search is for")
    ((name, device),) = devices.items()
    with multiplexed(lab.multiplex) as control:
        remote = Remote(name, device, lab, control)
        try:
            remote.prepare({backend})
            there = {key: remote.put_folder(folder, BUILD_OUTPUTS)
                     for key, folder in folders.items()}  # fmt: skip
            say(f"timing {len(there)} architectures on {name} ...")
            found = json.loads(remote.edgetl(["probe-latency", *there.values(),
                                              "--iterations", str(iterations)]))  # fmt: skip
        except (DeviceFault, ValueError) as exc:
            raise EdgetlError(f"--on {on}: {exc}") from exc
    timed = {}
    for key, folder in folders.items():
        latency = found[str(there[key])]
        # The model files the probe runs (not edgetl's wheel or a bundle's other graphs).
        size = sum((folder / name).stat().st_size for name in Probe.read(folder).files) / 1e6
        timed[key] = TimedArch(Latency.from_dict(latency), round(size, 3), f"{backend} on {name}")
    return timed
