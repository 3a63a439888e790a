"""One `pulse` process of a benchmark's pipeline, logging to its own file: started, SIGKILLed, stopped as Ctrl-C
would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pulse.errors import PulseError


class Stage:
    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.name = f"pulse {args[0]}" if args else "pulse"
        self._argv = [sys.executable, "-m", "pulse", *args]
        self._env, self._log = env, log
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self._log.open("ab") as out:
            return subprocess.Popen(self._argv, env=self._env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or handed over."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def kill_and_restart(self) -> None:
        self.kill()
        self.proc = self._start()

    def stop(self, timeout: float = 120) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)


def wait_for(check: Callable[[], bool], timeout: float, what: str, stages: list[Stage] | None = None) -> None:
    """Poll ``check`` until true; fails on timeout, or at once when one of ``stages`` has exited."""
    deadline = time.monotonic() + timeout
    while not check():
        gone = [stage for stage in stages or [] if not stage.alive]
        if gone:
            raise PulseError(f"{gone[0].name} exited (code {gone[0].proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise PulseError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)
