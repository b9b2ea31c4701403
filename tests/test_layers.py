"""The layering contract: the folders of edgetl/ are layers, and imports run one way.

    cli (and the pytest plugin)  ->  stages  ->  quantize  ->  train  ->  backends  ->  core

A module may import its own layer and the layers below it, never one above; nothing imports
`edgetl.cli`; `core` and `backends` (the device side) import no torch, timm, nncf or
scikit-learn, and no onnx outside the host-only modules named here (a device has no onnx
package: load, predict and bench must not need it). Every import counts, also those
inside functions (lazy imports run too); only `if TYPE_CHECKING:` blocks are exempt from
the heavy-package rule (they never run).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("core", "backends", "train", "quantize", "stages", "cli")
# Modules outside the layer folders and the layer they belong to.
INTERFACES = {"edgetl": "cli", "edgetl.__main__": "cli", "edgetl.pytest_plugin": "cli"}
DEVICE_SIDE = ("core", "backends")
HEAVY = ("torch", "torchvision", "timm", "nncf", "sklearn")
# (module, package) pairs allowed despite HEAVY, each with its reason.
HEAVY_EXCEPTIONS = {
    # The built-in `digits` dataset is scikit-learn's: imported only when asked for by name.
    ("edgetl.core.data.digits", "sklearn"),
    # ExecuTorch lowers a PyTorch model (export only), and its Python runtime links libtorch
    # and takes torch tensors: a device runs a .pte only with the `executorch` extra, which
    # brings torch (docs/arm.md). No other runtime is reached through these.
    ("edgetl.backends.executorch.compiler", "torch"),
    ("edgetl.backends.executorch.runtime", "torch"),
}
# Host-only modules below stages: they read or write ONNX graphs (export, the guard, the
# search), each with its reason, and every runtime's compiler (backends/*/compiler.py).
# Everything else below stages runs on the device without the onnx package, and imports
# no host-only module (so no runtime reaches onnx through one).
ONNX_HOST_ONLY = {
    "edgetl.backends.compiler": "the compilers' contract",
    "edgetl.backends.onnx_graph": "graph surgery for export",
    "edgetl.backends.onnxruntime.rewrites": "the lossless QDQ rewrite at export",
    "edgetl.backends.onnxruntime.fp16": "the FP16 check of a graph at export",
    "edgetl.backends.tensorrt.rules": "TensorRT's Q/DQ rules, checked at export",
}


def host_only(module: str) -> bool:
    return module in ONNX_HOST_ONLY or (
        module.startswith("edgetl.backends.") and module.endswith(".compiler")
    )


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.why}"


def layer_of(module: str) -> str | None:
    if module in INTERFACES:
        return INTERFACES[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def violations(root: Path) -> list[Violation]:
    """Every import in `root`/edgetl that breaks the contract."""
    found: list[Violation] = []
    for path in sorted((root / "edgetl").rglob("*.py")):
        module = module_name(path, root)
        layer = layer_of(module)
        if layer is None:
            found.append(Violation(module, 1, "-", f"not in a layer folder ({', '.join(LAYERS)})"))
            continue
        tree = ast.parse(path.read_text(), str(path))
        typing_only = _type_checking_lines(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for line, imported in _imports(tree, package):
            top = imported.split(".")[0]
            if top == "edgetl":
                found += _check_edge(module, layer, line, imported)
                if layer in DEVICE_SIDE and host_only(imported) and not host_only(module):
                    found.append(Violation(module, line, imported, "a host-only module"))
            elif (
                layer in DEVICE_SIDE
                and top in HEAVY
                and line not in typing_only
                and (module, top) not in HEAVY_EXCEPTIONS
            ):
                found.append(Violation(module, line, imported, f"{layer} is device-side"))
            elif (
                layer in DEVICE_SIDE
                and top == "onnx"
                and line not in typing_only
                and not host_only(module)
            ):
                found.append(Violation(module, line, imported, f"{layer} runs without onnx"))
    return found


def _check_edge(module: str, layer: str, line: int, imported: str) -> list[Violation]:
    if imported == "edgetl":
        return []  # the root package: __version__ and load(), which imports nothing up front
    target = layer_of(imported)
    if target is None:
        return [Violation(module, line, imported, "imports a module outside the layers")]
    if target == "cli" and layer != "cli":
        return [Violation(module, line, imported, "nothing imports the command line")]
    if LAYERS.index(target) > LAYERS.index(layer):
        return [Violation(module, line, imported, f"{layer} may not import {target} (upward)")]
    return []


def test_the_tree_keeps_the_layering_contract() -> None:
    found = violations(ROOT)
    assert not found, "layering contract broken:\n" + "\n".join(map(str, found))


def test_the_root_package_imports_nothing_up_front() -> None:
    """Any layer may import `edgetl` for __version__ because the root runs no edgetl import."""
    tree = ast.parse((ROOT / "edgetl" / "__init__.py").read_text())
    eager = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgetl")
    ]
    assert not eager


def _plant(tmp_path: Path, module: str, source: str) -> Path:
    path = tmp_path / (module.replace(".", "/") + ".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    _plant(tmp_path, "edgetl.core.records", "def f():\n    from edgetl.stages import export\n")
    _plant(tmp_path, "edgetl.backends.base", "from ..train.model import Run\n")
    _plant(tmp_path, "edgetl.stages.export", "import edgetl.cli.output\n")
    _plant(tmp_path, "edgetl.core.measures.metrics", "import torch\n")
    _plant(tmp_path, "edgetl.core.artifact.integrity", "def f():\n    import onnx\n")
    _plant(tmp_path, "edgetl.backends.openvino.runtime", "def f():\n    import onnx\n")
    _plant(tmp_path, "edgetl.backends.openvino.compiler", "import onnx\n")
    _plant(tmp_path, "edgetl.backends.artifact", "from edgetl.backends.compiler import Compiler\n")
    _plant(
        tmp_path,
        "edgetl.core.ok",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\nfrom edgetl.core import metrics\n",
    )
    _plant(tmp_path, "edgetl.stray", "x = 1\n")
    found = {(v.module, v.imported) for v in violations(tmp_path)}
    assert found == {
        ("edgetl.core.records", "edgetl.stages"),
        ("edgetl.backends.base", "edgetl.train.model"),
        ("edgetl.stages.export", "edgetl.cli.output"),
        ("edgetl.core.measures.metrics", "torch"),
        ("edgetl.core.artifact.integrity", "onnx"),
        ("edgetl.backends.openvino.runtime", "onnx"),
        ("edgetl.backends.artifact", "edgetl.backends.compiler"),
        ("edgetl.stray", "-"),
    }


def import_cycles(root: Path) -> list[list[str]]:
    """Groups of modules of `root`/edgetl that import each other round (lazy imports count)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / "edgetl").rglob("*.py")):
        module = module_name(path, root)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = {name for _, name in _imports(tree, package) if name.startswith("edgetl.")}

    def known(name: str) -> str:
        while name and name not in graph:
            name = name.rpartition(".")[0]
        return name

    edges = {m: {known(d) for d in deps} - {"", m} for m, deps in graph.items()}
    cycles, seen = [], set()
    for start in edges:
        reach = _reachable(edges, start)
        if start in reach and start not in seen:
            group = sorted(m for m in reach if start in _reachable(edges, m))
            seen.update(group)
            cycles.append(group)
    return cycles


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    reach, todo = set(), list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in reach:
            reach.add(node)
            todo += edges.get(node, ())
    return reach


def test_no_modules_import_each_other_round() -> None:
    """The dataset <-> digits <-> shards and search <-> lab cycles are gone; none may return."""
    assert import_cycles(ROOT) == []


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path, "edgetl.stages.search.search", "def f():\n    import edgetl.stages.lab.probes\n"
    )
    _plant(tmp_path, "edgetl.stages.lab.probes", "from edgetl.stages.search.search import f\n")
    _plant(tmp_path, "edgetl.core.alone", "x = 1\n")
    assert import_cycles(tmp_path) == [["edgetl.stages.lab.probes", "edgetl.stages.search.search"]]
