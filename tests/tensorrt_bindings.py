"""TensorRT's real Python bindings, importable without its libraries or a GPU.

PyPI's TensorRT library wheels are download stubs for NVIDIA's own index (unreachable
here), but the binding wheels are real: `tensorrt-cu12-bindings` (10.x) and
`tensorrt-cu13-bindings` (11.x). They link against libnvinfer.so.N, libnvonnxparser.so.N
and libnvinfer_plugin.so.N and resolve nine C entry points from them; tiny C libraries
exporting those (each returning NULL) are built here with the system compiler. Then
`import tensorrt` gives that version's real enums, classes and signatures, and creating a
Builder raises, as on a machine without a GPU.

`python tests/tensorrt_bindings.py RELEASE CODE` runs CODE with that release's `tensorrt`
(RELEASE: 10.3, 10 or 11, the keys of WHEELS).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# The releases CI checks the code against: JetPack 6's own TensorRT (10.3, what every Orin
# runs until JetPack 7), the newest 10.x, and 11.x. Keys are what tests parametrize over.
WHEELS = {
    "10.3": "tensorrt-cu12-bindings==10.3.0",
    "10": "tensorrt-cu12-bindings>=10.8,<11",
    "11": "tensorrt-cu13-bindings>=11,<12",
}
ENTRY_POINTS = {
    "libnvinfer": """
void* createInferBuilder_INTERNAL(void* logger, int version) { return 0; }
void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) { return 0; }
void* createInferRuntime_INTERNAL(void* logger, int version) { return 0; }
void* getPluginRegistry(void) { return 0; }
void* getBuilderPluginRegistry(int capability) { return 0; }
""",
    "libnvonnxparser": """
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { return 0; }
void* createNvOnnxParserRefitter_INTERNAL(void* refitter, void* logger, int version) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
""",
    "libnvinfer_plugin": """
int initLibNvInferPlugins(void* logger, const char* name_space) { return 0; }
""",
}
# `import tensorrt`, as the library wheels' `tensorrt` package provides it.
SHIM = "from tensorrt_bindings import *  # noqa: F403\nfrom tensorrt_bindings import __version__\n"


class Unavailable(Exception):
    """Why the bindings cannot be prepared here (no compiler, no index): the test skips."""


def prepare(release: str, root: Path) -> Path:
    """A directory holding stub libraries and that release's bindings (a key of WHEELS) as
    `tensorrt`; cached."""
    major = int(release.split(".")[0])
    home = root / f"tensorrt{release}"
    if (home / "ready").is_file():
        return home
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise Unavailable("no C compiler (cc) to build the stub TensorRT libraries")
    home.mkdir(parents=True, exist_ok=True)
    for name, source in ENTRY_POINTS.items():
        c_file = home / f"{name}.c"
        c_file.write_text(source)
        soname = f"{name}.so.{major}"
        built = subprocess.run(
            [compiler, "-shared", "-fPIC", "-o", str(home / soname), f"-Wl,-soname,{soname}"]
            + [str(c_file)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if built.returncode != 0:
            raise Unavailable(f"{compiler} could not build {soname}: {built.stderr[-300:]}")
    wheels = home / "wheels"
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        + ["-d", str(wheels), WHEELS[release]],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if download.returncode != 0 or not found:
        raise Unavailable(f"cannot download {WHEELS[release]}: {download.stderr.strip()[-300:]}")
    site = home / "site"
    _unpack(found[-1], site)
    (site / "tensorrt").mkdir(exist_ok=True)
    (site / "tensorrt" / "__init__.py").write_text(SHIM)
    (home / "ready").write_text(found[-1].name)
    return home


def polygraphy(root: Path) -> Path:
    """A directory holding the real Polygraphy (pure Python, from the index), to put on the
    path beside the bindings where a test needs it; cached."""
    home = root / "polygraphy"
    if (home / "ready").is_file():
        return home / "site"
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        + ["-d", str(home / "wheels"), "polygraphy>=0.49"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    found = sorted((home / "wheels").glob("*.whl")) if (home / "wheels").is_dir() else []
    if download.returncode != 0 or not found:
        raise Unavailable(f"cannot download polygraphy: {download.stderr.strip()[-300:]}")
    _unpack(found[-1], home / "site")
    (home / "ready").write_text(found[-1].name)
    return home / "site"


def _unpack(wheel_file: Path, site: Path) -> None:
    try:
        with zipfile.ZipFile(wheel_file) as wheel:
            wheel.extractall(site)
    except (zipfile.BadZipFile, OSError) as exc:
        raise Unavailable(f"cannot unpack {wheel_file.name}: {exc}") from exc


def run(
    home: Path, code: str, timeout: int = 120, extra: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """CODE in a fresh interpreter that imports this major's real `tensorrt` bindings (and
    whatever `extra` directories hold)."""
    paths = [str(home / "site"), *map(str, extra), str(Path(__file__).parents[1])]
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": f"{home}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        "PYTHONPATH": os.pathsep.join(paths),
    }
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )


if __name__ == "__main__":
    import tempfile

    prepared = prepare(sys.argv[1], Path(tempfile.gettempdir()) / "edgetl-tensorrt-stubs")
    result = run(prepared, sys.argv[2])
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
