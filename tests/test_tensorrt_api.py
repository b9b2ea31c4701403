"""The TensorRT code against TensorRT's real API, without a GPU or TensorRT's libraries:

- every TensorRT name the code uses (found by reading the code's syntax tree, so a new call
  cannot escape) exists in the real 10.x and 11.x bindings, each route's builder flags in
  its own major; a Builder cannot be created there, and the message says why;
- build_engine against recording fakes shaped like each major (10: precision flags and
  implicit INT8 for DLA; 11: strongly typed only), int8/fp16 x GPU/DLA x static/dynamic;
- the engine runner copies outputs out of the buffer Polygraphy reuses.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetl.backends.tensorrt import engine as tensorrt_engine
from edgetl.backends.tensorrt.engine import ROUTES, build_engine, route
from edgetl.backends.tensorrt.requirements import needs_numpy_below_2
from edgetl.backends.tensorrt.runtime import encode_version
from edgetl.core.errors import EdgetlError
from tests import tensorrt_bindings

CODE = Path(__file__).parents[1] / "edgetl"
TENSORRT = CODE / "backends" / "tensorrt"
ENGINE_MODULE = TENSORRT / "engine.py"
TRT_MODULES = [ENGINE_MODULE, TENSORRT / "runtime.py", TENSORRT / "build.py"]
# The TensorRT class of each variable the code calls TensorRT through, and of what calls
# on them return. A variable built from TensorRT that is not here fails the test below.
RECEIVERS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "cache": "ITimingCache",
    "tensor": "ITensor",
    "logger": "Logger",
    "serialized": "IHostMemory",
    "runtime": "Runtime",
    "inspected": "ICudaEngine",
    "inspector": "EngineInspector",
}
RETURNS = {
    ("network", "get_layer"): "ILayer",
    ("network", "get_input"): "ITensor",
    ("config", "get_timing_cache"): "ITimingCache",
    ("parser", "get_error"): "ParserError",
}
MODULE_NAMES = {"trt", "tensorrt"}
# Used only on the routes with implicit INT8 calibration (TensorRT 10): checked per route.
CALIBRATION_ONLY = {("IInt8EntropyCalibrator2",), ("IInt8EntropyCalibrator2", "__init__"),
                    ("IBuilderConfig", "int8_calibrator")}  # fmt: skip


def trt_names() -> tuple[set[tuple[str, ...]], set[tuple[str, str]], list[str]]:
    """(module attribute chains like ("BuilderFlag", "GPU_FALLBACK"), (class, member) pairs
    used on receivers, names assigned from TensorRT objects that have no class here)."""
    chains: set[tuple[str, ...]] = set()
    members: set[tuple[str, str]] = set()
    unknown: list[str] = []
    for path in TRT_MODULES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                chain = _chain(node)
                if chain and chain[0] in MODULE_NAMES and len(chain) > 1:
                    chains.add(tuple(chain[1:3]))
                elif (
                    chain and chain[0] in RECEIVERS and len(chain) == 2 and path == ENGINE_MODULE
                ):  # other modules call TensorRT through the module name only
                    members.add((RECEIVERS[chain[0]], chain[1]))
                call = node.value
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
                    inner = _chain(call.func)
                    if inner and len(inner) == 2 and tuple(inner) in RETURNS:
                        members.add((RETURNS[tuple(inner)], node.attr))  # type: ignore[arg-type]
            if isinstance(node, ast.Assign) and path == ENGINE_MODULE:
                source = _root(node.value)
                if source in MODULE_NAMES or source in RECEIVERS:
                    for target in node.targets:
                        plain = ("major", "flags", "strongly_typed", *RECEIVERS)  # not objects
                        if isinstance(target, ast.Name) and target.id not in plain:
                            unknown.append(target.id)
    return chains, members, unknown


def _chain(node: ast.AST) -> list[str] | None:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    return [node.id, *names] if isinstance(node, ast.Name) else None


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript, ast.BinOp)):
        node = node.func if isinstance(node, ast.Call) else (
            node.left if isinstance(node, ast.BinOp) else node.value)  # fmt: skip
    return node.id if isinstance(node, ast.Name) else None


def test_every_tensorrt_call_is_known_to_this_test() -> None:
    chains, members, unknown = trt_names()
    assert unknown == [], f"add the TensorRT class of {unknown} to RECEIVERS"
    assert ("MemoryPoolType", "WORKSPACE") in chains and ("IBuilderConfig", "set_flag") in members
    assert ("ILayer", "name") in members and ("INetworkDefinition", "get_layer") in members


@pytest.fixture(scope="session")
def stubs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this run builds the stub libraries and unpacks the bindings: pytest's own temp
    directory (a shared /tmp cache could be another run's, half-written or not ours)."""
    return tmp_path_factory.mktemp("tensorrt-stubs")


@pytest.fixture(scope="module", params=sorted(tensorrt_bindings.WHEELS))
def bindings(request: pytest.FixtureRequest, stubs_root: Path) -> tuple[int, Path]:
    """(major, bindings home) for JetPack 6's 10.3, the newest 10.x and 11.x."""
    try:
        home = tensorrt_bindings.prepare(request.param, stubs_root)
        return int(request.param.split(".")[0]), home
    except tensorrt_bindings.Unavailable as exc:
        pytest.skip(str(exc))


SURFACE = """
import json, sys, tensorrt as trt
wanted = json.loads(sys.argv[-1]) if len(sys.argv) > 1 else None
"""


def test_the_real_bindings_have_every_name_the_code_uses(bindings: tuple[int, Path]) -> None:
    major, home = bindings
    chains, members, _ = trt_names()
    flags = sorted({flag for (m, _, _), r in ROUTES.items() if m == major for flag in r.flags})
    wanted = {
        "chains": sorted(chains - CALIBRATION_ONLY),
        "members": sorted(members - CALIBRATION_ONLY),
        "flags": flags,
        "calibrator": any(r.calibration for (m, _, _), r in ROUTES.items() if m == major),
    }
    code = f"""
import json, tensorrt as trt
wanted = json.loads({json.dumps(json.dumps(wanted))})
missing = []
for chain in wanted["chains"]:
    found = trt
    for name in chain:
        if not hasattr(found, name):
            missing.append(".".join(chain)); break
        found = getattr(found, name)
for owner, name in wanted["members"]:
    if not hasattr(getattr(trt, owner, None), name):
        missing.append(owner + "." + name)
for flag in wanted["flags"]:
    if not hasattr(trt.BuilderFlag, flag):
        missing.append("BuilderFlag." + flag)
if wanted["calibrator"]:
    for name in ("IInt8EntropyCalibrator2",):
        if not hasattr(trt, name):
            missing.append(name)
    if not hasattr(trt.IBuilderConfig, "int8_calibrator"):
        missing.append("IBuilderConfig.int8_calibrator")
print(json.dumps({{"version": trt.__version__, "missing": missing}}))
"""
    result = tensorrt_bindings.run(home, code)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["version"].startswith(f"{major}.")
    assert found["missing"] == [], f"TensorRT {found['version']} lacks {found['missing']}"


def test_weak_typing_is_gone_from_11_and_only_11(bindings: tuple[int, Path]) -> None:
    """What made the routes differ: FP16/INT8 flags and implicit calibration exist in 10
    only. A route of 11 naming FP16 would fail the test above."""
    major, home = bindings
    result = tensorrt_bindings.run(
        home,
        "import tensorrt as trt; print(hasattr(trt.BuilderFlag, 'FP16'), "
        "hasattr(trt.BuilderFlag, 'INT8'), hasattr(trt, 'IInt8EntropyCalibrator2'))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == (["True"] * 3 if major == 10 else ["False"] * 3)
    assert all("FP16" not in r.flags and "INT8" not in r.flags
               for (m, _, _), r in ROUTES.items() if m == 11)  # fmt: skip


def test_no_gpu_is_a_clear_exit_2_with_the_real_bindings(
    bindings: tuple[int, Path], tmp_path: Path, stubs_root: Path
) -> None:
    major, home = bindings
    (tmp_path / "model.onnx").write_bytes(b"")
    code = f"""
from pathlib import Path
from edgetl.backends.tensorrt.engine import build_engine
from edgetl.backends.tensorrt.runtime import TensorRtRuntime, encode_version
import tensorrt as trt
print("VERSION", trt.__version__)
print("MISSING", TensorRtRuntime().missing())
v = trt.__version__.split(".")
print("ENCODED", encode_version(trt.__version__), int(v[0]) * 10000 + int(v[1]) * 100 + int(v[2]))
try:
    build_engine(Path({str(tmp_path)!r}), "int8", 64, -1, None)
except Exception as exc:
    print("ERROR", type(exc).__name__, exc)
"""
    try:
        polygraphy = tensorrt_bindings.polygraphy(stubs_root)
    except tensorrt_bindings.Unavailable as exc:
        pytest.skip(str(exc))
    if importlib.util.find_spec("polygraphy") is None:  # this venv has none: say so first
        bare = tensorrt_bindings.run(home, code)
        assert "Polygraphy (which runs the engine) is not installed" in bare.stdout, bare.stderr
    result = tensorrt_bindings.run(home, code, extra=(polygraphy,))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    if needs_numpy_below_2(lines["VERSION"]) and int(np.__version__.split(".")[0]) >= 2:
        assert "pip install 'numpy<2'" in lines["MISSING"]  # JetPack 6's 10.3 under NumPy 2
    else:
        assert lines["MISSING"].startswith("TensorRT imports, but")  # no CUDA device here
    encoded, expected = lines["ENCODED"].split()
    assert encoded == expected
    assert lines["ERROR"].startswith("EdgetlError") and "cannot create a builder" in lines["ERROR"]


def test_the_numpy_rule_matches_the_real_bindings(bindings: tuple[int, Path]) -> None:
    """Which TensorRT needs NumPy below 2 is what its bindings do: under NumPy 2, 10.3's
    read an array as zeros (silently); 10.16+ and 11.x read it right."""
    _, home = bindings
    code = (
        "import numpy as np, tensorrt as trt; "
        "print(trt.__version__, trt.Weights(np.arange(6, dtype=np.float32)).numpy().tolist())"
    )
    result = tensorrt_bindings.run(home, code)
    assert result.returncode == 0, result.stderr
    version, values = result.stdout.split(" ", 1)
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"NumPy {np.__version__} here: every release reads it right")
    broken = json.loads(values) == [0.0] * 6
    assert broken == needs_numpy_below_2(version), (version, values)


def test_version_encoding_matches_jetpack_6() -> None:
    assert encode_version("10.3.0") == 100300  # JetPack 6: TRT-100300-EntropyCalibration2
    assert encode_version("11.4.1.6") == 110401


# ---- build_engine against fakes shaped like each major ------------------------------------


def fake_trt(major: int, batch: int = 1, calls: list[Any] | None = None) -> types.ModuleType:
    """A recording `tensorrt` with the members each major really has (see the tests above)."""
    log = calls if calls is not None else []
    flags = ["GPU_FALLBACK", "TF32"] + (["FP16", "INT8", "BF16"] if major == 10 else [])
    module = types.ModuleType("tensorrt")
    module.__version__ = "10.3.0.30" if major == 10 else "11.4.1.6"  # type: ignore[attr-defined]

    class Enum:
        def __init__(self, *names: str):
            for index, name in enumerate(names):
                setattr(self, name, f"{type(self).__name__}.{name}:{index}")

    module.BuilderFlag = type("BuilderFlag", (Enum,), {})(*flags)  # type: ignore[attr-defined]
    module.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)  # type: ignore[attr-defined]
    module.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")  # type: ignore[attr-defined]
    module.DeviceType = types.SimpleNamespace(DLA="DLA", GPU="GPU")  # type: ignore[attr-defined]
    module.ProfilingVerbosity = types.SimpleNamespace(DETAILED="DETAILED")  # type: ignore[attr-defined]
    module.LayerInformationFormat = types.SimpleNamespace(JSON="JSON")  # type: ignore[attr-defined]

    class Inspector:
        def __init__(self, layers: list[dict[str, str]]):
            self.layers = layers

        def get_engine_information(self, fmt: str) -> str:
            assert fmt == "JSON"
            return json.dumps({"Layers": self.layers, "Bindings": ["images", "logits"]})

    class Runtime:
        """What the builder really made: on DLA, layer0-2 fused into one DLA subgraph
        (although the plan said layer0-2 would), its reformats and layer3 on the GPU."""

        def __init__(self, logger: Any):
            self.DLA_core = -1

        def deserialize_cuda_engine(self, engine: bytes) -> Any:
            log.append(("deserialize", self.DLA_core))
            dla = [{"Name": "images to nvm", "LayerType": "Reformat"},
                   {"Name": "{ForeignNode[layer0...layer2]}", "LayerType": "DLA"},
                   {"Name": "logits from nvm", "LayerType": "Reformat"}]  # fmt: skip
            # The inspector's short and long Format/Datatype spellings (DETAILED verbosity)
            gpu = [{"Name": f"layer{i}", "LayerType": "CaskConvolution",
                    "Outputs": [{"Format/Datatype": "Channel major INT8 format where "
                                 "channel % 32 == 0"}]} for i in range(3)]  # fmt: skip
            myelin = [
                {
                    "Name": "{ForeignNode[layer3]}",
                    "LayerType": "Myelin",
                    "Outputs": [{"Format/Datatype": "Row major linear FP16 format"}],
                }
            ]
            on_dla = self.DLA_core >= 0
            inspector = Inspector((dla if on_dla else gpu) + myelin)
            return types.SimpleNamespace(create_engine_inspector=lambda: inspector)

    module.Runtime = Runtime  # type: ignore[attr-defined]
    module.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})  # type: ignore[attr-defined]
    if major == 10:
        module.IInt8EntropyCalibrator2 = type(  # type: ignore[attr-defined]
            "IInt8EntropyCalibrator2", (), {"__init__": lambda self: None}
        )

    class Layer:
        def __init__(self, index: int):
            self.name = f"layer{index}"

    class Tensor:
        name, shape = "images", [batch, 3, 8, 8]

    class Network:
        num_layers = 4

        def get_layer(self, index: int) -> Layer:
            return Layer(index)

        def get_input(self, index: int) -> Tensor:
            return Tensor()

    class Profile:
        def set_shape(self, *args: Any) -> None:
            log.append(("profile.set_shape", args))

    class Config:
        def __setattr__(self, name: str, value: Any) -> None:
            log.append(("config." + name, value))
            object.__setattr__(self, name, value)

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            log.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag: str) -> None:
            log.append(("set_flag", flag.split(".")[1].split(":")[0]))

        def can_run_on_DLA(self, layer: Layer) -> bool:
            return layer.name != "layer3"

        def add_optimization_profile(self, profile: Profile) -> None:
            log.append(("add_optimization_profile",))

        def create_timing_cache(self, data: bytes) -> object:
            return object()

        def set_timing_cache(self, cache: object, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> Any:
            return types.SimpleNamespace(serialize=lambda: b"timing")

    class Builder:
        def __init__(self, logger: Any):
            pass

        def create_network(self, flags: int) -> Network:
            log.append(("create_network", flags))
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            return b"engine"

    class Parser:
        num_errors = 0

        def __init__(self, network: Network, logger: Any):
            pass

        def parse_from_file(self, path: str) -> bool:
            log.append(("parse", Path(path).name))
            return True

    module.Builder, module.OnnxParser = Builder, Parser  # type: ignore[attr-defined]
    return module


def build_with(major: int, precision: str, dla: int, batch: int = 1, monkeypatch=None):
    calls: list[Any] = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(major, batch, calls))
    built = build_engine(Path("/bundle"), precision, 512, dla, None, b"TRT-100300-Entropy\n")
    return built, calls


@pytest.mark.parametrize(
    ("major", "precision", "dla", "onnx", "flags", "typed"),
    [
        (10, "int8", -1, "model.onnx", ["INT8", "FP16"], False),
        (10, "int8", 0, "model.fp32.onnx", ["INT8", "FP16", "GPU_FALLBACK"], False),
        (10, "fp16", -1, "model.onnx", ["FP16"], False),
        (10, "fp16", 0, "model.onnx", ["FP16", "GPU_FALLBACK"], False),
        (11, "int8", -1, "model.onnx", [], True),
        (11, "fp16", -1, "model.fp16.onnx", [], True),
        (11, "fp16", 0, "model.fp16.onnx", ["GPU_FALLBACK"], True),
    ],
)
def test_build_engine_per_major(
    major: int, precision: str, dla: int, onnx: str, flags: list[str], typed: bool, monkeypatch
) -> None:
    built, calls = build_with(major, precision, dla, monkeypatch=monkeypatch)
    assert ("parse", onnx) in calls
    assert [c[1] for c in calls if c[0] == "set_flag"] == flags
    assert ("create_network", 1 << 5 if typed else 0) in calls
    assert built.engine == b"engine" and built.record["onnx"] == onnx
    calibrated = [c for c in calls if c[0] == "config.int8_calibrator"]
    assert bool(calibrated) == (major == 10 and precision == "int8" and dla >= 0)
    assert ("config.profiling_verbosity", "DETAILED") in calls  # what the inspector reads
    record = built.record
    assert record["placement"] == "engine inspector"
    if dla >= 0:
        assert ("config.default_device_type", "DLA") in calls and ("config.DLA_core", 0) in calls
        assert ("deserialize", 0) in calls  # inspected on the core it was built for
        # The plan (can_run_on_DLA) and what the built engine does, apart: one DLA
        # subgraph; a Myelin ForeignNode is the GPU's.
        assert record["planned_dla_layers"] == 3 and record["planned_gpu"] == ["layer3"]
        assert record["dla_layers"] == 1 and record["gpu_layers"] == 3
        assert record["gpu_fallback_layers"] == [
            "images to nvm", "logits from nvm", "{ForeignNode[layer3]}"
        ]  # fmt: skip
        assert record["layer_types"] == {"GPU Reformat unknown": 2, "DLA DLA unknown": 1,
                                         "GPU Myelin fp16": 1}  # fmt: skip
    else:
        assert not any(c[0] == "config.default_device_type" for c in calls)
        assert record["dla_layers"] == 0 and record["gpu_layers"] == 4
        assert record["layer_types"] == {"GPU CaskConvolution int8": 3, "GPU Myelin fp16": 1}
    # What the build writes is the typed engine record, read back whole by load().
    from edgetl.backends.tensorrt.record import EngineDevice, EngineRecord

    typed = EngineRecord(**record, device=EngineDevice(gpu="Orin"), engine_sha256="ab")
    assert EngineRecord.parse(json.dumps(typed.to_dict()), "engine.json") == typed


def test_a_rejected_timing_cache_is_replaced_and_never_loses_the_engine(monkeypatch) -> None:
    """set_timing_cache returns False for a cache of another device: nothing is attached,
    and get_timing_cache() after a successful build was None (None.serialize() lost the
    engine). A fresh cache is attached instead; the engine is kept whatever the cache."""
    module = fake_trt(10)
    config_class = type(module.Builder(None).create_builder_config())
    attached: list[object] = []

    def set_timing_cache(self: Any, cache: object, ignore_mismatch: bool) -> bool:
        if not attached:
            attached.append("rejected")
            return False
        attached.append(cache)
        return True

    monkeypatch.setattr(config_class, "set_timing_cache", set_timing_cache)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    built = build_engine(Path("/bundle"), "int8", 512, -1, b"old", None)
    assert built.warnings == [
        "the timing cache is from another device or TensorRT: not used (a fresh one is)"
    ]
    assert len(attached) == 2 and built.engine == b"engine" and built.timing_cache == b"timing"
    monkeypatch.setattr(config_class, "get_timing_cache", lambda self: None)
    built = build_engine(Path("/bundle"), "int8", 512, -1, b"old", None)
    assert built.engine == b"engine" and built.timing_cache == b""


def test_int8_on_dla_with_11_builds_from_the_qdq_graph(monkeypatch) -> None:
    """TensorRT 11.4.1's DLA (AGX Orin, JetPack 7.2.2+) is strongly typed: the Q/DQ graph's
    types set INT8, no calibration cache and no precision flag (it has none)."""
    built, calls = build_with(11, "int8", 0, monkeypatch=monkeypatch)
    assert ("parse", "model.onnx") in calls
    assert [c[1] for c in calls if c[0] == "set_flag"] == ["GPU_FALLBACK"]
    assert not [c for c in calls if c[0] == "config.int8_calibrator"]
    assert ("config.default_device_type", "DLA") in calls


def test_a_dynamic_batch_gets_a_profile_on_the_gpu_and_is_refused_on_dla(monkeypatch) -> None:
    built, calls = build_with(10, "int8", -1, batch=-1, monkeypatch=monkeypatch)
    shapes = next(c[1] for c in calls if c[0] == "profile.set_shape")
    assert shapes == ("images", [1, 3, 8, 8], [8, 3, 8, 8], [32, 3, 8, 8])
    assert ("add_optimization_profile",) in calls
    assert built.record["dynamic_batch"] == {"min": 1, "opt": 8, "max": 32}
    with pytest.raises(EdgetlError, match="DLA builds need a static batch"):
        build_with(10, "fp16", 0, batch=-1, monkeypatch=monkeypatch)


def test_every_route_is_reachable() -> None:
    for (major, precision, kind), found in ROUTES.items():
        assert route(major, precision, kind == "DLA") is found
    assert tensorrt_engine.route(12, "fp16", False) is ROUTES[(11, "fp16", "GPU")]


# ---- the engine runner --------------------------------------------------------------------


class PolygraphyRunner:
    """Polygraphy's TrtRunner as TrtRunner uses it: activation, input metadata; `loader`
    is what EngineFromBytes got (the engine bytes and the runtime)."""

    shape: tuple[int, ...] = (2, 3, 8, 8)

    def __init__(self, loader: Any):
        self.loader, self.is_active = loader, False

    def activate(self) -> None:
        self.is_active = True

    def deactivate(self) -> None:
        self.is_active = False

    def get_input_metadata(self, use_numpy_dtypes: bool | None = None) -> dict[str, Any]:
        assert use_numpy_dtypes is False  # Polygraphy warns that NumPy dtypes are deprecated
        return {"images": types.SimpleNamespace(shape=self.shape)}


def fake_polygraphy(monkeypatch: pytest.MonkeyPatch, runner: type) -> None:
    """`polygraphy.backend.trt` with `runner` as its TrtRunner, over fake_trt(10)."""
    module = types.ModuleType("polygraphy.backend.trt")
    module.EngineFromBytes = lambda data, runtime=None: (data, runtime)  # type: ignore[attr-defined]
    module.TrtRunner = runner  # type: ignore[attr-defined]
    for name in ("polygraphy", "polygraphy.backend"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", module)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(10))


def test_the_engine_runner_copies_the_buffer_polygraphy_reuses(monkeypatch) -> None:
    """Polygraphy's TrtRunner.infer returns views of one output buffer, overwritten by the
    next call: without a copy every row of a multi-batch run was the last batch's."""
    from edgetl.backends.base import run_all
    from edgetl.backends.tensorrt.runtime import TrtRunner

    class ReusingRunner(PolygraphyRunner):
        def __init__(self, loader: Any):
            super().__init__(loader)
            self.buffer = np.zeros((2, 4), np.float32)

        def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.buffer[:] = feed["images"].reshape(2, -1)[:, :4]
            return {"logits": self.buffer}  # the same array every call

    fake_polygraphy(monkeypatch, ReusingRunner)
    runner = TrtRunner(b"engine")
    images = np.arange(6 * 3 * 8 * 8, dtype=np.float32).reshape(6, 3, 8, 8)
    logits = run_all(runner, images)
    np.testing.assert_array_equal(logits, images.reshape(6, -1)[:, :4])
    first = runner.named(images[:2])  # a detector's outputs by name, copied out too
    runner.named(images[2:4])
    np.testing.assert_array_equal(first["logits"], images[:2].reshape(2, -1)[:, :4])
    # An engine built for DLA core 1 is deserialized by a runtime set to core 1 (the
    # default runtime says 0); a closed runner is deactivated (Polygraphy warns otherwise).
    assert runner._runner.loader[1].DLA_core == -1
    on_core_1 = TrtRunner(b"engine", dla_core=1)
    assert on_core_1._runner.loader == (b"engine", on_core_1._runner.loader[1])
    assert on_core_1._runner.loader[1].DLA_core == 1
    on_core_1.close()
    assert not on_core_1._runner.is_active


def test_a_loaded_engine_runs_on_its_dla_core_and_names_its_batch_limit(
    tmp_path: Path, monkeypatch
) -> None:
    """load() takes the DLA core and the optimization profile from engine.json: the engine
    is deserialized on the core it was built for, and `bench --batch 64` on a profile of
    1..32 is a clear exit 2 naming it (was exit 3, "a bug", after measuring batch 1)."""
    import hashlib

    from edgetl.backends.artifact import Model
    from edgetl.backends.tensorrt import cuda_device
    from edgetl.backends.tensorrt import runtime as backend
    from edgetl.core.records import RuntimeSpec
    from edgetl.stages.bench.harness import _check_batches
    from edgetl.stages.bench.options import BenchOptions

    class DynamicRunner(PolygraphyRunner):
        shape = (-1, 3, 8, 8)

    fake_polygraphy(monkeypatch, DynamicRunner)
    monkeypatch.setattr(backend, "tensorrt_available", lambda: True)
    orin = {"gpu": "Orin", "compute_capability": "8.7", "module": "AGX Orin", "l4t": "R36"}
    monkeypatch.setattr(cuda_device, "identity", lambda: dict(orin))
    (tmp_path / "model.engine").write_bytes(b"engine")
    record = {"tensorrt": "10.3.0.30", "device": orin, "dla_core": 1,
              "engine_sha256": hashlib.sha256(b"engine").hexdigest(),
              "dynamic_batch": {"min": 1, "opt": 8, "max": 32}}  # fmt: skip
    (tmp_path / "engine.json").write_text(json.dumps(record))
    runner = backend.TensorRtRuntime().load(tmp_path, RuntimeSpec(["model.onnx"], "DLA"))
    assert runner._runner.loader[1].DLA_core == 1 and runner.max_batch == 32
    model = Model(tmp_path, None, runner)  # type: ignore[arg-type]
    item = types.SimpleNamespace(model=model)
    _check_batches([item], BenchOptions(artifacts=[tmp_path], batch=(1, 8, 32)))
    with pytest.raises(EdgetlError, match=r"--batch 64: .*profile for batches 1..32; use"):
        _check_batches([item], BenchOptions(artifacts=[tmp_path], batch=(1, 64)))
    with model:
        assert runner._runner.is_active
    assert not runner._runner.is_active  # closed with the model


# ---- the engine record ----------------------------------------------------------------------


def test_the_engine_record_ties_an_engine_to_its_device(tmp_path: Path, monkeypatch) -> None:
    """On JetPack 6 (no nvidia-smi) both sides' GPU was None and any engine passed: the
    device is what the CUDA driver and the device tree say, and unknown is refused."""
    from edgetl.backends.tensorrt import cuda_device
    from edgetl.backends.tensorrt.runtime import check_engine_record

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(10))
    orin = {
        "gpu": "Orin",
        "compute_capability": "8.7",
        "module": "NVIDIA Jetson Orin Nano Developer Kit",
        "l4t": "# R36 (release)",
    }
    record = tmp_path / "engine.json"
    record.write_text(json.dumps({"tensorrt": "10.3.0.30", "device": orin}))
    monkeypatch.setattr(cuda_device, "identity", lambda: dict(orin))
    assert check_engine_record(record).to_dict()["device"] == orin
    monkeypatch.setattr(cuda_device, "identity", lambda: {**orin, "compute_capability": "7.2"})
    with pytest.raises(EdgetlError, match="built with compute_capability '8.7'.*'7.2'"):
        check_engine_record(record)
    unknown = dict.fromkeys(orin)
    monkeypatch.setattr(cuda_device, "identity", lambda: unknown)
    with pytest.raises(EdgetlError, match="cannot tell which device this is"):
        check_engine_record(record)
    record.write_text("{not json")
    with pytest.raises(EdgetlError, match="not valid JSON"):
        check_engine_record(record)
    # A record of the wrong shape names the key (was a KeyError: exit 3, "a bug").
    record.write_text(json.dumps({"tensorrt": "10.3.0.30", "device": orin, "dla_core": "one"}))
    with pytest.raises(EdgetlError, match="dla_core: expected int"):
        check_engine_record(record)


def test_without_a_cuda_driver_the_reason_is_named() -> None:
    from edgetl.backends.tensorrt.cuda_device import CudaDevice, first_device, identity

    found = first_device()
    if isinstance(found, CudaDevice):
        pytest.skip("this machine has a CUDA device")
    assert "libcuda" in found or "no" in found
    assert identity()["gpu"] is None


# ---- search --on: probe folders on a device --------------------------------------------------


def test_a_probe_folder_keeps_its_digest_when_the_device_builds_into_it(tmp_path: Path) -> None:
    """The device writes model.engine, engine.json and timing.cache into a TensorRT probe's
    folder; with them in the digest every `search --on` copied the folder again and rebuilt
    every engine. Here and there (the device's own script) the digest leaves them out."""
    import subprocess

    from edgetl.backends.probe import BUILD_OUTPUTS
    from edgetl.stages.lab.remote import FOLDER_DIGEST, folder_digest

    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"graph")
    (folder / "probe.json").write_text("{}")
    before = folder_digest(folder, BUILD_OUTPUTS)
    for name in BUILD_OUTPUTS:
        (folder / name).write_bytes(b"built there")
    assert folder_digest(folder, BUILD_OUTPUTS) == before != folder_digest(folder)
    words = [sys.executable, "-c", FOLDER_DIGEST, str(folder), "files", *BUILD_OUTPUTS]
    there = subprocess.run(words, capture_output=True, text=True, check=True)
    assert there.stdout.strip() == before
    (folder / "model.onnx").write_bytes(b"another graph")  # the content still counts
    assert folder_digest(folder, BUILD_OUTPUTS) != before


def test_a_probe_engine_from_another_device_is_rebuilt_not_refused(
    tmp_path: Path, monkeypatch
) -> None:
    """A probe folder holding an engine built on another device (or TensorRT) is built
    again here; load() refused it with exit 2 before."""
    import hashlib

    from edgetl.backends import probe as probes
    from edgetl.backends.tensorrt import build, cuda_device
    from edgetl.backends.tensorrt import runtime as backend

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(10))
    monkeypatch.setattr(backend.TensorRtRuntime, "missing", lambda self: None)
    orin = {"gpu": "Orin", "compute_capability": "8.7", "module": "AGX Orin", "l4t": "R36"}
    monkeypatch.setattr(cuda_device, "identity", lambda: dict(orin))
    rebuilt: list[Path] = []
    monkeypatch.setattr(build, "write_engine", lambda folder, *args: rebuilt.append(folder))
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "model.engine").write_bytes(b"engine")
    record = {"tensorrt": "10.3.0.30", "engine_sha256": hashlib.sha256(b"engine").hexdigest(),
              "device": {**orin, "compute_capability": "7.2", "gpu": "Xavier"}}  # fmt: skip
    (folder / "engine.json").write_text(json.dumps(record))
    probe = probes.Probe("tensorrt", ["model.onnx"], 64, "fp16", "GPU")
    probes._engine_for(folder, probe)
    assert rebuilt == [folder]  # another device: built here
    record["device"] = orin
    (folder / "engine.json").write_text(json.dumps(record))
    probes._engine_for(folder, probe)
    assert rebuilt == [folder]  # this device and TensorRT: kept
