"""Start, watch and stop one local server process, tracked by a pid file.

Pulse only ever signals processes it started: the pid file names a process-group leader that Pulse
spawned in its own session, and we check that the pid still runs the expected command before a kill.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pulse.errors import StackError
from pulse.polling import WaitFailed, poll_until


@dataclass(frozen=True)
class ManagedProcess:
    """A server process Pulse owns: its name, pid file, log file and a marker found in its command line."""

    name: str
    pid_file: Path
    log_file: Path
    cmdline_marker: str

    def pid(self) -> int | None:
        """The pid from the pid file if that process is alive and is ours, else None (stale files go)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _is_ours(pid, self.cmdline_marker):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path,
              user: str | None = None) -> subprocess.Popen[bytes]:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        ids: dict[str, object] = {}
        if user:
            entry = pwd.getpwnam(user)
            ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, **ids,
            )
        except OSError as exc:
            raise StackError(f"cannot start {self.name}: {exc}") from None
        finally:
            log.close()
        self.pid_file.write_text(str(proc.pid))
        return proc

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM the process group, wait, then SIGKILL it. Returns whether anything was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL the process group at once, as a crash would end it. Returns whether anything was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])


def _is_ours(pid: int, marker: str) -> bool:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie is gone for our purposes
        return False
    return marker in raw.decode(errors="replace")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return True
        time.sleep(0.2)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], *, timeout: float, alive: Callable[[], bool], what: str,
               log_tail: Callable[[], str]) -> None:
    """Poll ``check`` until true; fail fast with the log tail if the process died, or on timeout."""
    try:
        poll_until(check, timeout, f"{what} to become healthy",
                   stop=lambda: None if alive() else f"{what} exited during start-up")
    except WaitFailed as exc:
        raise StackError(f"{exc}; last log lines:\n{log_tail()}") from None


def interrupt(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """Stop a child we started like Ctrl-C would (SIGINT), killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
