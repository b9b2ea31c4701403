"""The system OpenSSH client as the lab's transport, so users' keys, agents, ~/.ssh/config,
ProxyJump and ControlMaster work as they do for them.

Every call: BatchMode (never a password prompt), StrictHostKeyChecking=yes (a host not in
known_hosts is refused, with the line that trusts it), a connect timeout, keep-alives (a
dropped link is noticed within ~15 s) and a per-command timeout. The remote command is one
string the device's shell parses: every word of it goes through shlex.quote, so a device
name, path or option with spaces or `;` is data, never shell syntax. Files travel as a tar
stream on ssh's stdin (`tar -x -C DIR` there): no second tool, no remote globbing.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

KEEPALIVE = ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
# One connection per device, reused by every command of a lab run: a new connection costs
# 0.36 s to 127.0.0.1 on a 2-core host (key exchange, session), a reused one 0.1 s.
CONTROL_PERSIST_S = 30
SSH_FAILED = 255  # ssh's own exit status: the connection, not the remote command, failed


class DeviceFault(Exception):
    """This device cannot go on (unreachable, timed out, dropped, failed); the lab goes on."""


class RemotePath(str):
    """A path on the device; `~/x` is the remote user's home ("$HOME"/'x' when quoted)."""

    def quoted(self) -> str:
        if self == "~":
            return '"$HOME"'
        if self.startswith("~/"):
            return '"$HOME"/' + shlex.quote(self[2:])
        return shlex.quote(str(self))

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(f"{self.rstrip('/')}/{name}")


def command_line(words: list[str]) -> str:
    """The remote shell's command: each word quoted (RemotePath: with its home expanded)."""
    return " ".join(w.quoted() if isinstance(w, RemotePath) else shlex.quote(w) for w in words)


@dataclass(frozen=True)
class Ssh:
    device: str  # the lab's name for it, in messages
    destination: str
    port: int | None
    config: Path | None
    connect_timeout_s: float
    timeout_s: float
    control: Path | None = None  # multiplexed(): the folder of this run's master sockets

    def argv(self, remote: str) -> list[str]:
        args = ["ssh"]
        if self.config is not None:
            args += ["-F", str(self.config)]
        if self.control is not None:
            args += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}/%C"]
            args += ["-o", f"ControlPersist={CONTROL_PERSIST_S}"]
        if self.port is not None:
            args += ["-p", str(self.port)]
        args += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        args += ["-o", f"ConnectTimeout={max(1, round(self.connect_timeout_s))}", *KEEPALIVE]
        return [*args, "--", self.destination, remote]

    def run(
        self, words: list[str], timeout_s: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `words` on the device; DeviceFault when ssh itself failed or time ran out.

        The remote command's own exit status is the caller's to judge."""
        return self._raw(command_line(words), None, timeout_s, f"`{words[0]}`")

    def check(self, words: list[str], what: str, timeout_s: float | None = None) -> str:
        """Run `words`; its stdout, or DeviceFault naming `what` and the last error line."""
        return self.check_all([words], what, timeout_s)

    def check_all(
        self, commands: list[list[str]], what: str, timeout_s: float | None = None
    ) -> str:
        """Run each command in turn (`&&`: one connection), as check() does."""
        line = " && ".join(command_line(words) for words in commands)
        result = self._raw(line, None, timeout_s, f"`{commands[0][0]}`")
        if result.returncode != 0:
            raise DeviceFault(f"{what} failed (exit {result.returncode}): {last_line(result)}")
        return result.stdout

    def send(self, files: dict[str, Path], remote_dir: RemotePath) -> None:
        """Local files (archive name -> path) into `remote_dir` on the device, created."""
        with tempfile.TemporaryFile() as stream:
            with tarfile.open(fileobj=stream, mode="w") as tar:
                for name, path in files.items():
                    tar.add(path, arcname=name, recursive=False)
            stream.seek(0)
            unpack = f"mkdir -p {remote_dir.quoted()} && tar -x -m -C {remote_dir.quoted()}"
            result = self._raw(unpack, stream, None, "the copy")
        if result.returncode != 0:
            raise DeviceFault(f"copying to {remote_dir} failed: {last_line(result)}")

    def _raw(
        self, remote: str, stdin: IO[bytes] | None, timeout_s: float | None, what: str
    ) -> subprocess.CompletedProcess[str]:
        limit = timeout_s or self.timeout_s
        try:
            result = subprocess.run(
                self.argv(remote),
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeviceFault(f"timed out after {limit:g} s running {what}") from exc
        except FileNotFoundError as exc:
            raise DeviceFault("no `ssh` client on this host (install OpenSSH)") from exc
        if result.returncode == SSH_FAILED:
            raise DeviceFault(self.explain(result.stderr))
        return result

    def explain(self, stderr: str) -> str:
        """ssh's failure in a line that says what to do."""
        text = " ".join(stderr.split())
        if "Host key verification failed" in text or "No ED25519 host key is known" in text:
            return (
                f"host key of {self.destination} is not in known_hosts (refused: never trusted "
                f"blindly). If this is the device, trust it once: {self.trust_line()}"
            )
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
            return f"host key of {self.destination} CHANGED since it was trusted: {text[-200:]}"
        for sign, meaning in (
            ("Permission denied", "refused the login (key not authorized; BatchMode: no "
                                  "passwords)"),
            ("Connection refused", "unreachable (connection refused)"),
            ("timed out", "unreachable (timed out)"),
            ("Could not resolve", "unreachable (unknown host name)"),
            ("No route to host", "unreachable (no route)"),
        ):  # fmt: skip
            if sign in text:
                return f"{meaning}: {text[-200:]}"
        return f"connection dropped or failed: {text[-200:] or 'ssh exited 255'}"

    def trust_line(self) -> str:
        host = self.destination.rsplit("@", 1)[-1]
        port = f"-p {self.port} " if self.port else ""
        config = f"-F {shlex.quote(str(self.config))} " if self.config else ""
        if self.config is None:
            return f"ssh-keyscan {port}{shlex.quote(host)} >> ~/.ssh/known_hosts (check it first)"
        return (
            f"ssh {config}{port}-o StrictHostKeyChecking=accept-new {shlex.quote(host)} true "
            "(check the fingerprint it prints first)"
        )


@contextmanager
def multiplexed(enabled: bool) -> Iterator[Path | None]:
    """A private folder for ssh's master sockets while a lab command runs (None: off); the
    masters are told to exit at the end."""
    if not enabled:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="edgetl-ssh-"))
    try:
        yield folder
    finally:
        for socket in folder.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "master"],
                           capture_output=True, timeout=10, check=False)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[-1].strip()[-300:] if lines else "no output"
