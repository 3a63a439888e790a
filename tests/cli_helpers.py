"""Running the real `pulse` command from tests, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys


def run_pulse(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pulse", *args], env=env or dict(os.environ), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert the command failed with a single `pulse: error:` line and no traceback; return that line."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("pulse: error: "), proc.stderr
    return first
