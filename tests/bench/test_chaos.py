"""`pulse chaos`, shortened: the same faults on a private stack, and the same verdict (exit 0 only when exact)."""

from __future__ import annotations

import re

import pytest

from tests.cli_helpers import run_pulse


@pytest.mark.slow
def test_a_short_chaos_run_ends_exact() -> None:
    done = run_pulse("chaos", "--rate", "3000", "--seconds", "60", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "chaos: exact" in done.stdout
    assert "SIGKILL the writer" in done.stdout and "broker stopped" in done.stdout
    forwarded = re.search(r"of those, forwarded \(not keyed by user id\)\s*│?\s*([\d,]+)", done.stdout)
    assert forwarded and int(forwarded.group(1).replace(",", "")) > 10_000, done.stdout[-3000:]
