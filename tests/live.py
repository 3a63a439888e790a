"""`pulse` commands running in the background beside a test, their output in files, and their metrics."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

from pulse.polling import WaitFailed, poll_until


class Stage:
    """One `pulse` command running in the background, its output in a file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "pulse", *args], stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            self._out.close()


def metric(port: int, name: str) -> float:
    """A sample of a stage's Prometheus metrics endpoint (-1: not answering, or no such metric)."""
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return -1.0
    found = re.search(rf"^{name} (\S+)$", body, re.M)
    return float(found.group(1)) if found else -1.0


def wait_for(check: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> None:
    """Poll ``check``; on timeout, fail with the end of the stage's ``log``."""
    try:
        poll_until(check, timeout, what, every_s=0.2)
    except WaitFailed as exc:
        raise AssertionError(f"{exc}:\n{log()[-3000:]}") from None
