"""Rooms stay small: no module of edgetl/ over 400 lines, no function over 60 (decorators
included: a command's options are declared on its options dataclass, not listed there)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "edgetl"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def oversized(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(root.parent)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                lines = (node.end_lineno or node.lineno) - start + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name}(): {lines} lines")
    return found


def test_no_module_or_function_is_oversized() -> None:
    found = oversized(ROOT)
    assert not found, "split these:\n" + "\n".join(found)


def test_the_check_finds_a_planted_long_function(tmp_path: Path) -> None:
    package = tmp_path / "edgetl"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (package / "long.py").write_text(f"def long():\n{body}\n")
    (package / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert oversized(package) == [
        f"edgetl/big.py: {MAX_MODULE_LINES + 1} lines",
        f"edgetl/long.py:1 long(): {MAX_FUNCTION_LINES + 1} lines",
    ]
