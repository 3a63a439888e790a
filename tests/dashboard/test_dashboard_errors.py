"""Operator mistakes around the dashboard: a taken port, Elasticsearch unreachable, a public address without read
tokens."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from pulse.stack.private import free_port
from pulse.stack.process import interrupt
from tests.cli_helpers import one_line_error, run_pulse


def _first_answer(proc: subprocess.Popen[bytes], url: str) -> httpx.Response:
    """The first response of the dashboard starting in ``proc`` (it must not die meanwhile)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=10)
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.3)


def test_unreachable_elasticsearch_is_a_503_with_a_reason_and_a_taken_port_one_line() -> None:
    port = free_port()
    # nothing listens on port 9; the password written into the URL must never be shown
    env = dict(os.environ) | {"PULSE_ES_URL": "http://pulse:s3cr3t-pw@127.0.0.1:9"}
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "dashboard", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        resp = _first_answer(proc, f"http://127.0.0.1:{port}/api/health")
        assert resp.status_code == 503
        assert "Elasticsearch at http://127.0.0.1:9 failed" in resp.json()["detail"]
        assert "s3cr3t" not in resp.text
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200  # the page itself still loads
        taken = run_pulse("dashboard", "--port", str(port))
        assert "already in use" in one_line_error(taken)
    finally:
        assert interrupt(proc, 10) is not None
        assert b"s3cr3t" not in proc.stderr.read()  # type: ignore[union-attr]


def test_host_check_security_headers_and_a_cap_on_live_streams() -> None:
    port = free_port()
    env = dict(os.environ) | {"PULSE_ES_URL": "http://127.0.0.1:9"}
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "dashboard", "--port", str(port), "--max-streams", "1",
                             "--allowed-hosts", "pulse.internal"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        page = _first_answer(proc, f"{base}/")
        assert page.status_code == 200
        assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "content-security-policy" not in httpx.get(f"{base}/docs", timeout=10).headers  # Swagger UI's CDN
        # DNS rebinding: a name that resolves to 127.0.0.1 but is not ours is refused
        assert httpx.get(f"{base}/api/health", headers={"Host": "attacker.example"}, timeout=10).status_code == 400
        for host in (f"localhost:{port}", "pulse.internal"):
            assert httpx.get(f"{base}/", headers={"Host": host}, timeout=10).status_code == 200, host
        with httpx.stream("GET", f"{base}/api/stream", timeout=10) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: failure"  # ES is down
            second = httpx.get(f"{base}/api/stream", timeout=10)
            assert second.status_code == 503 and "--max-streams" in second.text
        deadline = time.monotonic() + 10  # the closed stream frees its place
        while True:
            with httpx.stream("GET", f"{base}/api/stream", timeout=10) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        assert interrupt(proc, 10) is not None


def test_read_tokens_guard_every_page_and_call_and_a_public_address_needs_them() -> None:
    exposed = run_pulse("dashboard", "--host", "0.0.0.0", "--port", str(free_port()))
    assert "without read tokens" in one_line_error(exposed)
    port = free_port()
    env = dict(os.environ) | {"PULSE_ES_URL": "http://127.0.0.1:9",
                              "PULSE_DASHBOARD_TOKENS": "team-token-1,ops-token-2"}
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "dashboard", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _first_answer(proc, f"{base}/api/health").status_code == 503  # open to health checks (ES is down)
        for path in ("/", "/api/users/u-1", "/api/overview", "/api/stream", "/docs"):
            refused = httpx.get(f"{base}{path}", timeout=10)
            assert refused.status_code == 401, path
        assert httpx.get(f"{base}/", params={"token": "wrong-token"}, timeout=10).status_code == 401
        assert httpx.get(f"{base}/", headers={"Authorization": "Bearer ops-token-2"}, timeout=10).status_code == 200
        with httpx.Client(base_url=base, timeout=10) as browser:  # a link with the token, then the cookie
            assert browser.get("/", params={"token": "team-token-1"}).status_code == 200
            assert browser.cookies.get("pulse_token") == "team-token-1"
            assert browser.get("/docs").status_code == 200
    finally:
        assert interrupt(proc, 10) is not None
        assert b"team-token-1" not in proc.stderr.read()  # type: ignore[union-attr]
