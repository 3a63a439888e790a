"""Operator mistakes around the dashboard: a taken port, Elasticsearch unreachable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from pulse.stack.process import interrupt
from tests.cli_helpers import one_line_error, run_pulse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_elasticsearch_is_a_503_with_a_reason_and_a_taken_port_one_line() -> None:
    port = _free_port()
    # nothing listens on port 9; the password written into the URL must never be shown
    env = dict(os.environ) | {"PULSE_ES_URL": "http://pulse:s3cr3t-pw@127.0.0.1:9"}
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "dashboard", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.3)
        assert resp.status_code == 503
        assert "Elasticsearch at http://127.0.0.1:9 failed" in resp.json()["detail"]
        assert "s3cr3t" not in resp.text
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200  # the page itself still loads
        taken = run_pulse("dashboard", "--port", str(port))
        assert "already in use" in one_line_error(taken)
    finally:
        assert interrupt(proc, 10) is not None
        assert b"s3cr3t" not in proc.stderr.read()  # type: ignore[union-attr]
