"""The host's PyTorch stack, checked once before a host command starts its work.

torch and torchvision are built in pairs (torchvision 0.(N+15) for torch 2.N); a mismatched
pair, what a CPU-only install from another index can give, fails inside timm's imports with
"operator torchvision::nms does not exist", which looked like an edgetl bug (exit 3).
"""

from __future__ import annotations

import importlib.metadata as metadata

from edgetl.core.errors import EdgetlError

TORCHVISION_OFFSET = 15  # torch 2.N pairs with torchvision 0.(N + 15): 2.5 -> 0.20, 2.14 -> 0.29


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def paired_torchvision(torch_version: str) -> str | None:
    """The torchvision release series built for this torch ("2.14.1+cpu" -> "0.29.*")."""
    parts = torch_version.split("+")[0].split(".")
    if len(parts) < 2 or parts[0] != "2" or not parts[1].isdigit():
        return None
    return f"0.{int(parts[1]) + TORCHVISION_OFFSET}.*"


def check_host_stack() -> None:
    """torch, then torchvision, imported as timm will; exit 2 saying what is installed and
    the line that fixes it."""
    torch_version = version("torch")
    try:
        import torch  # noqa: F401
    except Exception as exc:  # a broken wheel raises anything from ImportError to OSError
        raise EdgetlError(
            f"PyTorch {torch_version or '(not installed)'} does not import ({_first(exc)}); "
            "host commands need it: pip install --force-reinstall torch torchvision"
        ) from exc
    try:
        import torchvision  # noqa: F401
    except Exception as exc:
        installed = version("torchvision") or "(not installed)"
        paired = paired_torchvision(torch_version or "")
        fix = (
            f"pip install 'torchvision=={paired}' (the series built for torch {torch_version}; "
            "from the same index torch came from)"
            if paired
            else "pip install --force-reinstall torch torchvision (from one index)"
        )
        raise EdgetlError(
            f"torch {torch_version} and torchvision {installed} do not work together "
            f"({_first(exc)}): {fix}"
        ) from exc


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
