"""One lab device as the host drives it over ssh: what it has (probe), edgetl's device side
there (a managed venv from edgetl's own wheel), artifacts copied once by content, and
edgetl commands run there with their JSON fetched back."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.core.artifact.selfwheel import build_wheel, code_digest, wheel_name
from edgetl.stages.lab.labfile import Device, Lab
from edgetl.stages.lab.ssh import DeviceFault, RemotePath, Ssh, last_line

# Run by the device's interpreter (python -c): facts about the machine, and what the env
# that will run edgetl there has. Constant code: nothing from a user is in it (argv only).
PROBE = r"""
import json, os, platform, shutil, subprocess, sys, time
env, workdir, marker, stale_s = sys.argv[1], os.path.expanduser(sys.argv[2]), *sys.argv[3:5]
facts = {"arch": platform.machine(), "python": platform.python_version()}
try:
    with open("/etc/os-release") as f:
        rel = dict(l.rstrip().split("=", 1) for l in f if "=" in l)
    facts["os"] = rel.get("PRETTY_NAME", "").strip('"')
except OSError:
    facts["os"] = platform.platform()
try:
    with open("/etc/nv_tegra_release") as f:
        facts["l4t"] = f.readline().split(",")[0].lstrip("# ").strip()
except OSError:
    facts["l4t"] = None
# Versions from package metadata (importing OpenVINO or ONNX Runtime to ask costs ~0.5 s);
# an import only where there is none (JetPack's TensorRT comes from apt).
probe = ("import importlib.util as u, importlib.metadata as md, json\n"
         "dists = {'tensorrt': ('tensorrt', 'tensorrt-cu12', 'tensorrt-cu13'),\n"
         "         'onnxruntime': ('onnxruntime', 'onnxruntime-gpu', 'onnxruntime-openvino')}\n"
         "def v(m):\n"
         "    if u.find_spec(m) is None: return None\n"
         "    for d in dists.get(m, (m,)):\n"
         "        try: return md.version(d)\n"
         "        except Exception: pass\n"
         "    try: return __import__(m).__version__\n"
         "    except Exception as e: return 'broken: %s' % e\n"
         "print(json.dumps({m: v(m) for m in ('edgetl', 'tensorrt', 'openvino', 'onnxruntime',\n"
         "                                    'executorch', 'polygraphy', 'numpy', 'torch')}))")
env = os.path.expanduser(env)
if os.path.exists(env):
    out = subprocess.run([env, "-c", probe], capture_output=True, text=True, timeout=120)
    facts["env"] = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-200:]}
else:
    facts["env"] = None
try:
    with open(os.path.expanduser(marker)) as f:
        facts["code"] = f.read().strip()
except OSError:
    facts["code"] = None
os.makedirs(os.path.join(workdir, "reports"), exist_ok=True)
# Copies a dropped link left half-way (incoming/<random>), older than any copy still going.
incoming, now = os.path.join(workdir, "incoming"), time.time()
for name in os.listdir(incoming) if os.path.isdir(incoming) else []:
    path = os.path.join(incoming, name)
    if now - os.lstat(path).st_mtime > float(stale_s):
        shutil.rmtree(path, ignore_errors=True)
facts["free_gb"] = round(shutil.disk_usage(workdir).free / 1e9, 1)
print(json.dumps(facts))
"""

# The artifact's manifest digest there, after checking every file against it: a new copy
# whole (its ONNX external data too), one already there by its files' sha256 (the ONNX
# check imports onnx: 0.3 s per run for what was checked when it was copied).
VERIFY = r"""
import sys
from pathlib import Path
from edgetl.core.records.detector import DetectorManifest, is_detector
from edgetl.core.records.manifest import Manifest, verify_listed
root, whole = Path(sys.argv[1]), sys.argv[2] == "whole"
manifest = (DetectorManifest if is_detector(root) else Manifest).read(root, verify=whole)
verify_listed(root, manifest.files)
print(manifest.digest)
"""

# A folder's content: its files' relative paths and sha256, in order (folder_digest here).
FOLDER_DIGEST = r"""
import hashlib, os, sys
root, skip = sys.argv[1], set(sys.argv[3:])
if not os.path.isdir(root):
    sys.exit(3)
lines = []
for base, dirs, files in os.walk(root):
    for name in files:
        path = os.path.join(base, name)
        if os.path.relpath(path, root).replace(os.sep, "/") in skip:
            continue
        with open(path, "rb") as f:
            inner = hashlib.sha256(f.read()).hexdigest()
        lines.append(os.path.relpath(path, root).replace(os.sep, "/") + " " + inner + "\n")
print(hashlib.sha256("".join(sorted(lines)).encode()).hexdigest())
"""


def folder_digest(root: Path, skip: tuple[str, ...] = ()) -> str:
    """FOLDER_DIGEST's answer, computed here; `skip`: relative paths left out (what the
    device writes into the folder, e.g. a probe's engine). A name that is not UTF-8 is exit
    2 naming it (the remote side could not name it back)."""
    from edgetl.core.images import check_utf8_name

    for path in root.rglob("*"):
        check_utf8_name(path)
    lines = [
        f"{path.relative_to(root).as_posix()} {hashlib.sha256(path.read_bytes()).hexdigest()}\n"
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() not in skip
    ]
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


PIP_RUNTIMES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "executorch": "executorch"}
# What runs beside a runtime in the env (the probe reports their versions as `packages`):
# TensorRT's engines run through Polygraphy, installed with it, before any build.
# ExecuTorch's Python runtime links libtorch, but its wheel does not require torch.
COMPANIONS = {"tensorrt": ("polygraphy",), "executorch": ("torch",)}
PACKAGES = ("polygraphy", "numpy", "torch")


@dataclass
class Facts:
    """`edgetl devices`: one device's answers (or why there are none)."""

    name: str
    target: str
    reachable: bool
    reason: str = ""
    arch: str = ""
    os: str = ""
    l4t: str | None = None
    python: str = ""
    edgetl: str | None = None
    runtimes: dict[str, str] = field(default_factory=dict)
    free_gb: float | None = None
    code: str | None = None  # the managed env's edgetl code digest (selfwheel.code_digest)
    packages: dict[str, str] = field(default_factory=dict)  # PACKAGES found in the env
    emulated: bool = False  # the lab file says so (qemu): its latency means nothing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Remote:
    def __init__(self, name: str, device: Device, lab: Lab, control: Path | None = None):
        self.name, self.device = name, device
        self.ssh = Ssh(name, device.ssh, device.port, lab.ssh_config_of(device),
                       device.connect_timeout_s, device.timeout_s, control)  # fmt: skip
        self.workdir = RemotePath(device.workdir)
        self.managed = device.python is None
        self.python = RemotePath(device.python or self.workdir / "venv/bin/python")
        self.marker = self.workdir / "venv/edgetl-code.sha256"  # what the managed env holds

    def probe(self) -> Facts:
        facts = self._probe()
        facts.emulated = self.device.emulated
        return facts

    def _probe(self) -> Facts:
        base = RemotePath(self.device.base_python)
        # A half-made copy older than a command may run (the device's timeout) is stale.
        stale = str(max(600, round(self.device.timeout_s)))
        words = [base, "-c", PROBE, self.python, self.workdir, self.marker, stale]
        try:
            found = json.loads(self.ssh.check(words, "probing the device", 120))
        except DeviceFault as fault:
            return Facts(self.name, self.device.target, False, str(fault))
        except ValueError as exc:
            return Facts(self.name, self.device.target, False, f"probe answered no JSON: {exc}")
        env = found.get("env") or {}
        runtimes = {k: v for k, v in env.items()
                    if k not in ("edgetl", "error", *PACKAGES) and v}  # fmt: skip
        packages = {k: v for k, v in env.items() if k in PACKAGES and v}
        reason = "" if env else f"no edgetl env at {self.python} yet (made on first use)"
        if env.get("error"):
            reason = f"{self.python}: {env['error']}"
        return Facts(
            self.name, self.device.target, True, reason, found["arch"], found["os"],
            found.get("l4t"), found["python"], env.get("edgetl"), runtimes, found.get("free_gb"),
            found.get("code"), packages,
        )  # fmt: skip

    def prepare(self, runtimes: set[str]) -> Facts:
        """edgetl's device side there, with `runtimes` importable; returns the device's
        facts after. The managed venv is (re)made from this edgetl's wheel when it is absent
        or another version."""
        facts = self.probe()
        if not facts.reachable:
            raise DeviceFault(facts.reason)
        code = code_digest()
        if self.managed and (facts.edgetl != __version__ or facts.code != code):
            self._install(code)
            facts = self.probe()
        if facts.edgetl is None:
            raise DeviceFault(f"{self.python} has no edgetl: {facts.reason or 'install it'}")
        lacking = sorted(r for r in runtimes if r in PIP_RUNTIMES and r not in facts.runtimes)
        if lacking and not self.managed:
            raise DeviceFault(f"{self.python} lacks {', '.join(lacking)}: pip install them there")
        if lacking:
            self._pip([PIP_RUNTIMES[r] for r in lacking], f"installing {', '.join(lacking)}")
            facts = self.probe()
        return self._companions(facts, runtimes)

    def _companions(self, facts: Facts, runtimes: set[str]) -> Facts:
        """What runs beside the runtimes (Polygraphy beside TensorRT; NumPy below 2 beside a
        TensorRT older than 10.16), installed in the managed env before anything is built
        there; a device's own env is told what to run instead."""
        from edgetl.backends.tensorrt.requirements import NUMPY_BELOW_2, numpy_ok

        wanted = sorted({p for r in runtimes for p in COMPANIONS.get(r, ())} - set(facts.packages))
        tensorrt = facts.runtimes.get("tensorrt")
        if tensorrt and not numpy_ok(tensorrt, facts.packages.get("numpy")):
            wanted.append(NUMPY_BELOW_2)
        if not wanted:
            return facts
        if not self.managed:
            raise DeviceFault(
                f"{self.python} lacks {', '.join(wanted)} (TensorRT {tensorrt or 'absent'}): "
                f"pip install {' '.join(repr(w) for w in wanted)} there"
            )
        self._pip(wanted, f"installing {', '.join(wanted)}")
        return self.probe()

    def ensure(self, module: str, requirement: str, extra: str) -> None:
        """`module` importable by the env there: installed into the managed env, or a
        DeviceFault telling what to install into a device's own env."""
        found = self.ssh.run([self.python, "-c", "import sys, importlib.util as u; "
                              "sys.exit(u.find_spec(sys.argv[1]) is None)", module])  # fmt: skip
        if found.returncode == 0:
            return
        if not self.managed:
            raise DeviceFault(f"{self.python} lacks {module}: pip install '{extra}' there")
        self._pip([requirement], f"installing {module}")

    def _install(self, code: str) -> None:
        import tempfile

        venv = self.workdir / "venv"
        options = ["--system-site-packages"] if self.device.system_site_packages else []
        base = RemotePath(self.device.base_python)
        self.ssh.check([base, "-m", "venv", *options, venv], "making the venv (python3 -m venv)")
        with tempfile.TemporaryDirectory() as tmp:
            wheel = build_wheel(Path(tmp))
            self.ssh.send({wheel.name: wheel}, self.workdir / "wheels")
        # The same version number with other code (a development build): replace it first,
        # then install what its metadata asks for (pip resolves an installed wheel's own
        # dependencies; the other order kept the old wheel's list: a new dependency never came).
        self._pip(["--no-deps", "--force-reinstall", f"./{wheel_name()}"], "updating edgetl")
        self._pip([f"./{wheel_name()}"], f"installing edgetl {__version__}")
        record = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
        self.ssh.check([self.python, "-c", record, self.marker, code], "recording the install")

    def _pip(self, packages: list[str], what: str) -> None:
        """pip install, run in WORKDIR/wheels: the wheel is named relative to it, as pip
        would read a `;` in a path as the start of an environment marker."""
        pip = [self.python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        inside = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", self.workdir / "wheels"]
        self.ssh.check([*inside, *pip, *self.device.pip, *packages], what)

    def put(self, local: Path, digest: str) -> tuple[RemotePath, bool]:
        """The artifact at `local` on the device, copied unless the same content (manifest
        digest) is there already; returns its path there and whether it was copied.

        Copied under a temporary name, verified there (every file against the manifest),
        then renamed: a half-copied artifact is never at the path a bench uses."""
        return self._put(local, digest, VERIFY, "artifacts")

    def put_folder(self, local: Path, skip: tuple[str, ...] = ()) -> RemotePath:
        """A data folder on the device, copied once by content (like an artifact); `skip`:
        files the device itself writes into it (a probe's engine, its record and timing
        cache), which the content leaves out: else every run copied the folder anew and
        rebuilt the engine."""
        return self._put(local, folder_digest(local, skip), FOLDER_DIGEST, "data", skip)[0]

    def _put(
        self, local: Path, digest: str, check: str, kind: str, skip: tuple[str, ...] = ()
    ) -> tuple[RemotePath, bool]:
        home = self.workdir / kind / digest[:24]
        there = home / local.name
        if self._digest(check, there, "files", skip) == digest:
            return there, False
        incoming = self.workdir / "incoming" / secrets.token_hex(8)
        files = {f"{local.name}/{p.relative_to(local).as_posix()}": p
                 for p in sorted(local.rglob("*")) if p.is_file()}  # fmt: skip
        try:
            self.ssh.send(files, incoming)
            copied = self._digest(check, incoming / local.name, "whole", skip)
            if copied != digest:
                raise DeviceFault(f"the copy of {local.name} did not verify there ({copied})")
        except DeviceFault:
            # Best effort (the link may be gone); what stays is swept by the next probe.
            with contextlib.suppress(DeviceFault):
                self.ssh.run(["rm", "-rf", incoming], 60)
            raise
        moves = [["rm", "-rf", there], ["mkdir", "-p", home],
                 ["mv", "-T", incoming / local.name, there], ["rm", "-rf", incoming]]  # fmt: skip
        self.ssh.check_all(moves, "moving the verified copy in place")
        return there, True

    def _digest(self, script: str, path: RemotePath, depth: str, skip: tuple[str, ...] = ()) -> str:
        """What `script` (VERIFY or FOLDER_DIGEST) prints for `path` there."""
        result = self.ssh.run([self.python, "-c", script, path, depth, *skip], 300)
        lines = result.stdout.split()
        return lines[-1] if result.returncode == 0 and lines else "absent or damaged"

    def edgetl(self, args: list[str], accept: tuple[int, ...] = (0,)) -> str:
        """`edgetl ARGS` there with the env's interpreter; its stdout when it exits with one
        of `accept`, else DeviceFault with its last error line.

        Run under the device's own `timeout` as well: a command whose ssh client was killed
        here (timeout, dropped link) does not go on measuring on the board."""
        limit = str(max(1, round(self.device.timeout_s)))
        words = ["timeout", "-k", "10", limit, self.python, "-m", "edgetl", *args]
        result = self.ssh.run(words)
        if result.returncode not in accept:
            raise DeviceFault(f"edgetl {args[0]} exited {result.returncode} there: "
                              f"{last_line(result)}")  # fmt: skip
        return result.stdout

    def setup(self) -> None:
        for command in self.device.setup:
            # RemotePath: a program named ~/bin/x runs from the remote home
            self.ssh.check([RemotePath(command[0]), *command[1:]], f"setup `{' '.join(command)}`")

    def fetch(self, path: RemotePath, local: Path) -> None:
        """A file of the device's, to `local` (written whole or not at all), then removed
        there."""
        from edgetl.core.files import atomic_write_text

        fetched = self.ssh.check_all([["cat", path], ["rm", "-f", path]], f"fetching {path}")
        atomic_write_text(local, fetched)

    def scratch(self, suffix: str) -> RemotePath:
        return self.workdir / "reports" / f"{secrets.token_hex(8)}{suffix}"
