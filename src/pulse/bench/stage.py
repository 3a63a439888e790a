"""One `pulse` process of a benchmark's pipeline, logging to its own file: started, SIGKILLed, stopped as Ctrl-C
would; and whether it ever ended in a way nobody asked for (a crash a fault run must not pass over)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pulse.polling import poll_until

CLEAN_STOPS = (0, 130)  # a stage stopped with SIGINT exits with one of these


class Stage:
    def __init__(self, env: dict[str, str], log: Path, *args: str, ends_itself: bool = False) -> None:
        """``ends_itself``: the process exits when its work is done (a generator with a duration)."""
        self.name = f"pulse {args[0]}" if args else "pulse"
        self._ends_itself = ends_itself
        self.failures: list[str] = []  # how it ended, each time it ended but as told to
        self._argv = [sys.executable, "-m", "pulse", *args]
        self._env, self._log = env, log
        self._stopped = False
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self._log.open("ab") as out:
            return subprocess.Popen(self._argv, env=self._env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _check_alive(self) -> None:
        if not self.alive:
            self.failures.append(f"{self.name} exited on its own (code {self.proc.returncode})")

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or handed over."""
        self._check_alive()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def kill_and_restart(self) -> None:
        self.kill()
        self.proc = self._start()

    def stop(self, timeout: float = 120) -> int:
        """SIGINT, then SIGKILL if it has not exited within ``timeout``. Once stopped, it stays so."""
        if self._stopped:
            return self.proc.wait()
        self._stopped = True
        if not self.alive:
            if not (self._ends_itself and self.proc.returncode == 0):
                self.failures.append(f"{self.name} exited on its own (code {self.proc.returncode})")
            return self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.failures.append(f"{self.name} did not stop within {timeout:.0f} s of SIGINT")
            return self.proc.wait(30)
        if code not in CLEAN_STOPS:
            self.failures.append(f"{self.name} stopped with code {code}")
        return code


def wait_for(check: Callable[[], bool], timeout: float, what: str, stages: list[Stage] | None = None) -> None:
    """Poll ``check`` until true; fails on timeout, or at once when one of ``stages`` has exited."""
    def gone() -> str | None:
        return next((f"{stage.name} exited (code {stage.proc.returncode})" for stage in stages or []
                     if not stage.alive), None)
    poll_until(check, timeout, what, stop=gone)
