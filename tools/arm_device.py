"""An emulated aarch64 lab device on this x86 machine: an arm64 Debian userland
(debootstrap) run by qemu-user through binfmt_misc, with its own sshd on 127.0.0.1.

    python tools/arm_device.py up --lab devices.toml   # build once (~3-5 min), start, enrol
    python tools/arm_device.py status
    python tools/arm_device.py down

`up` is idempotent: the rootfs is cached in $EDGETL_ARM_HOME (default ~/.cache/edgetl/arm64)
and reused; a running sshd is kept. It writes or updates the lab file's device `arm64`
(target `arm-cpu`, `emulated = true`), with its own ssh config (key, port, known host).
Its latency means nothing (qemu translates every instruction); its answers are an ARM
CPU's answers: ONNX Runtime's and OpenVINO's aarch64 kernels, not the x86 ones.

Needs root (chroot, mounts) and Debian's qemu-user-static, debootstrap and binfmt-support:
    apt-get install -y qemu-user-static debootstrap binfmt-support

Two traps this works around (found 2026-12-06): qemu 7.2 (Debian 12) passes the host's x86
/proc/cpuinfo through, and `import onnxruntime` dies with SIGSEGV reading it: an ARMv8
cpuinfo is bind-mounted over the chroot's; and the default emulated CPU ("max": SVE, SME)
runs ~2.6x slower than QEMU_CPU=neoverse-n1, which sshd sets for every session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NAME = "arm64"
TARGET = "arm-cpu"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-venv,python3-pip,openssh-server,ca-certificates"
QEMU_CPU = "neoverse-n1"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
HOST_TOOLS = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap",
              "update-binfmts": "binfmt-support", "ssh-keygen": "openssh-client"}  # fmt: skip
# The chroot's sshd, on 127.0.0.1 only, key login as root; every session runs under the
# faster emulated CPU. Paths are the chroot's.
SSHD_CONFIG = """Port {port}
ListenAddress 127.0.0.1
HostKey /etc/ssh/edgetl_host_key
PidFile /run/edgetl-sshd.pid
AuthorizedKeysFile /etc/ssh/edgetl_authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
SetEnv QEMU_CPU={cpu}
MaxStartups 100
MaxSessions 100
LogLevel ERROR
"""
# What an ARMv8 (Neoverse-N1) Linux shows in /proc/cpuinfo, per core.
CPUINFO = """processor\t: {index}
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


class Refused(Exception):
    """Cannot go on: the message says what to do (exit 2)."""


def home() -> Path:
    return Path(os.environ.get("EDGETL_ARM_HOME", "~/.cache/edgetl/arm64")).expanduser()


def say(text: str) -> None:
    print(f"arm_device: {text}", file=sys.stderr, flush=True)


def run(words: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(words, check=True, text=True, **kwargs)  # type: ignore[call-overload]


# -- preconditions -----------------------------------------------------------------------


def check_host() -> None:
    if os.geteuid() != 0:
        raise Refused("needs root (debootstrap, chroot and mounts): run it with sudo")
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise Refused(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")


def enable_binfmt() -> None:
    """binfmt_misc mounted and qemu-aarch64 registered with the F flag (the interpreter is
    opened at registration, so the chroot needs no copy of it)."""
    if not (BINFMT / "status").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                                 capture_output=True, text=True, check=False)  # fmt: skip
        if mounted.returncode != 0:  # an unprivileged container: nothing to do here
            raise Refused(f"cannot mount binfmt_misc ({mounted.stderr.strip()[:200]}); "
                          "run on a host (or a privileged container) that can")  # fmt: skip
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    if "F" not in _flags(entry):
        raise Refused(f"{entry}: registered without the F flag; reinstall qemu-user-static")


def _flags(entry: Path) -> str:
    for line in entry.read_text().splitlines():
        if line.startswith("flags:"):
            return line.split(":", 1)[1].strip()
    return ""


# -- the rootfs --------------------------------------------------------------------------


def rootfs() -> Path:
    return home() / "rootfs"


def build_rootfs() -> float:
    """debootstrap into rootfs.partial, set it up, then rename: a half-built rootfs is never
    at the path `up` reuses. Returns the seconds it took (0 when cached)."""
    done = rootfs()
    if (done / "etc/edgetl-arm-device").is_file():
        return 0.0
    started = time.perf_counter()
    partial = home() / "rootfs.partial"
    unmount_all(partial)
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"debootstrap {SUITE} arm64 into {partial} (minutes, once per machine) ...")
    run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", SUITE,
         str(partial), MIRROR], stdout=subprocess.DEVNULL)  # fmt: skip
    _network(partial)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
         str(partial / "etc/ssh/edgetl_host_key")])  # fmt: skip
    (partial / "run/sshd").mkdir(parents=True, exist_ok=True)
    (partial / "etc/edgetl-arm-device").write_text(f"{SUITE} arm64 minbase\n")
    if done.exists():
        unmount_all(done)
        shutil.rmtree(done)
    partial.rename(done)
    return time.perf_counter() - started


def _network(root: Path) -> None:
    """The package registries straight from the chroot: this machine's resolver and CA
    bundle (the host's local wheel index holds x86 wheels only)."""
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        shutil.copy2(bundle, root / "etc/ssl/certs/ca-certificates.crt")


# -- mounts ------------------------------------------------------------------------------

MOUNTS = {
    "proc": ["-t", "proc", "proc"],
    "sys": ["-t", "sysfs", "sysfs"],
    "dev": ["--bind", "/dev"],
    "dev/pts": ["--bind", "/dev/pts"],
}


def mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/mounts") as table:
        return any(line.split()[1] == target for line in table)


def mount_all(root: Path) -> None:
    for inside, how in MOUNTS.items():
        where = root / inside
        where.mkdir(parents=True, exist_ok=True)
        if not mounted(where):
            run(["mount", *how, str(where)])
    cpuinfo = home() / "cpuinfo"
    cpus = os.cpu_count() or 1
    cpuinfo.write_text("".join(CPUINFO.format(index=i) for i in range(cpus)))
    if not _cpuinfo_is_arm(root):
        run(["mount", "--bind", str(cpuinfo), str(root / "proc/cpuinfo")])


def _cpuinfo_is_arm(root: Path) -> bool:
    return "CPU implementer" in (root / "proc/cpuinfo").read_text()


def unmount_all(root: Path) -> None:
    """Everything mounted under `root`, deepest first (the cpuinfo bind over proc too)."""
    if not root.exists():
        return
    base = str(root.resolve())
    with open("/proc/mounts") as table:
        points = [line.split()[1] for line in table]
    for point in sorted((p for p in points if p == base or p.startswith(base + "/")),
                        key=len, reverse=True):  # fmt: skip
        subprocess.run(["umount", "-l", point], check=False)


# -- sshd --------------------------------------------------------------------------------


def state_file() -> Path:
    return home() / "state.json"


def read_state() -> dict[str, object]:
    try:
        return dict(json.loads(state_file().read_text()))
    except (OSError, ValueError):
        return {}


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_key() -> Path:
    """The key `up` logs in with, made once; authorized inside the rootfs."""
    key = home() / "client_key"
    if not key.is_file():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    authorized = rootfs() / "etc/ssh/edgetl_authorized_keys"
    authorized.write_text(Path(f"{key}.pub").read_text())
    os.chmod(authorized, 0o600)
    return key


def start_sshd() -> int:
    """The chroot's sshd (idempotent): the port it answers on."""
    state = read_state()
    port = state.get("port")
    if isinstance(port, int) and _pid_alive(state.get("pid")) and answers(port):
        return port
    stop_sshd()
    port = free_port()
    root = rootfs()
    (root / "etc/ssh/sshd_config_edgetl").write_text(SSHD_CONFIG.format(port=port, cpu=QEMU_CPU))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": QEMU_CPU}
    run(["chroot", str(root), "/usr/sbin/sshd", "-f", "/etc/ssh/sshd_config_edgetl"], env=env)
    # sshd under emulation takes a few seconds to listen, and writes its pid file after it
    # listens (read empty once in a full test run)
    pid_file, deadline = root / "run/edgetl-sshd.pid", time.monotonic() + 60
    while not (answers(port) and pid_file.is_file() and pid_file.read_text().strip()):
        if time.monotonic() > deadline:
            raise Refused(f"the chroot's sshd did not answer on 127.0.0.1:{port} in 60 s")
        time.sleep(0.2)
    pid = int(pid_file.read_text().strip())
    state_file().write_text(json.dumps({"port": port, "pid": pid}))
    return port


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_sshd() -> None:
    pid = read_state().get("pid")
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
        for _ in range(50):
            if not _pid_alive(pid):
                break
            time.sleep(0.1)
    state_file().unlink(missing_ok=True)


def write_ssh_config(port: int, key: Path) -> Path:
    host_key = (rootfs() / "etc/ssh/edgetl_host_key.pub").read_text().split()
    known = home() / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    config = home() / "ssh_config"
    config.write_text(
        f"Host {NAME}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
    )
    return config


# -- the lab file ------------------------------------------------------------------------

BEGIN, END = "# >>> tools/arm_device.py (rewritten by `up`)", "# <<< tools/arm_device.py"


WORKDIR = "/root/edgetl-lab"  # the managed env, artifacts and reports, inside the rootfs


def device_block(config: Path, workdir: str) -> str:
    return (
        f'{BEGIN}\n[devices.{NAME}]\nssh = "{NAME}"\nssh_config = "{config}"\n'
        f'target = "{TARGET}"\nemulated = true\nworkdir = "{workdir}"\n'
        "timeout_s = 3600.0\n"
        f"{END}\n"
    )


def enrol(lab: Path, config: Path, workdir: str = WORKDIR) -> None:
    """Write `lab`, or replace the block this tool wrote in it; a [devices.arm64] written by
    someone else is left alone (an error names it)."""
    text = lab.read_text() if lab.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + device_block(config, workdir) + tail
    elif f"[devices.{NAME}]" in text:
        raise Refused(f"{lab}: has a [devices.{NAME}] this tool did not write; remove it first")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + device_block(config, workdir)
    partial = lab.with_name(f".{lab.name}.partial")
    partial.write_text(text)
    partial.replace(lab)


# -- commands ----------------------------------------------------------------------------


def up(lab: Path | None, workdir: str = WORKDIR) -> dict[str, object]:
    check_host()
    enable_binfmt()
    built_s = build_rootfs()
    mount_all(rootfs())
    key = client_key()
    port = start_sshd()
    config = write_ssh_config(port, key)
    if lab is not None:
        enrol(lab, config, workdir)
    uname = run(["ssh", "-F", str(config), "-o", "BatchMode=yes", NAME, "uname", "-m"],
                capture_output=True).stdout.strip()  # fmt: skip
    return {"device": NAME, "port": port, "ssh_config": str(config), "arch": uname,
            "rootfs": str(rootfs()), "built_s": round(built_s, 1),
            "lab": str(lab) if lab else None}  # fmt: skip


def down() -> dict[str, object]:
    stop_sshd()
    unmount_all(rootfs())
    return {"device": NAME, "stopped": True}


def status() -> dict[str, object]:
    state = read_state()
    port = state.get("port")
    running = isinstance(port, int) and _pid_alive(state.get("pid")) and answers(port)
    built = (rootfs() / "etc/edgetl-arm-device").is_file()
    return {"device": NAME, "built": built, "running": running, "port": port,
            "rootfs": str(rootfs())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="build (once), start and enrol the arm64 device")
    start.add_argument("--lab", type=Path, default=None, help="lab file to write or update")
    start.add_argument("--workdir", default=WORKDIR,
                       help="the device's workdir (its managed env): one per use keeps "
                            "an env with torch apart from one that must not have it")  # fmt: skip
    sub.add_parser("down", help="stop its sshd and unmount")
    sub.add_parser("status", help="built? running? on which port?")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            found = up(args.lab, args.workdir)
        else:
            found = down() if args.command == "down" else status()
    except Refused as refused:
        say(f"error: {refused}")
        return 2
    except subprocess.CalledProcessError as failed:
        say(f"error: {' '.join(map(str, failed.cmd))} exited {failed.returncode}")
        return 1
    print(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
