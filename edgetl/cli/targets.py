"""`edgetl targets`: the target profiles and what this machine has of them."""

from __future__ import annotations

from typing import Any

import click

from edgetl.cli.app import handle_errors, main
from edgetl.cli.output import emit
from edgetl.core.errors import EdgetlError
from edgetl.core.ui import fitted_table, stdout_console


def _device_present(backend: Any, device: str) -> bool:
    try:
        backend.check_device(device)
    except EdgetlError:
        return False
    return True


@main.command()
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def targets(as_json: bool) -> None:
    """List target profiles, their backend and precisions, and whether the runtime is here."""
    from edgetl.backends import get_runtime
    from edgetl.backends.profiles import list_targets

    rows: list[dict[str, Any]] = []
    for profile in list_targets():
        backend = get_runtime(profile.backend)
        present = backend.available()
        device_here = present and _device_present(backend, profile.device)
        rows.append(
            {
                "name": profile.alias or profile.name,
                "alias_of": None if profile.alias is None else profile.name,
                "backend": profile.backend,
                "device": profile.device,
                "precisions": list(profile.precisions),
                "runtime_present": present,
                "device_present": device_here,
                "description": profile.description,
            }
        )
    console = stdout_console()
    emit(
        rows,
        as_json,
        lambda: console.print(
            fitted_table(
                "targets",
                ["name", "backend", "device", "precisions", "runtime", "here", "about"],
                [
                    [
                        r["name"],
                        r["backend"],
                        r["device"],
                        ",".join(r["precisions"]),
                        "yes" if r["runtime_present"] else "no",
                        "yes" if r["device_present"] else "no",
                        r["description"]
                        if r["alias_of"] is None
                        else f"= {r['alias_of']}: {r['description']}",
                    ]
                    for r in rows
                ],
                console.width,
                ["name", "device", "precisions", "here", "runtime", "backend"],
                wrap="about",
                caption="runtime: installed here; here: the device is present",
            )
        ),
    )
