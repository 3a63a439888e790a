"""The metrics endpoint, health probes and log lines (no services needed)."""

from __future__ import annotations

import logging
import socket
import struct
import time

import httpx
import orjson
import pytest

from pulse.errors import PulseError
from pulse.observe import metrics
from pulse.observe.logs import JsonLines
from pulse.observe.server import every, parse_addr, serve
from pulse.stack.private import free_port


def test_addresses_default_to_loopback_and_bad_ones_are_one_line() -> None:
    assert parse_addr("9464") == ("127.0.0.1", 9464)
    assert parse_addr(":9464") == ("127.0.0.1", 9464)
    assert parse_addr("0.0.0.0:1") == ("0.0.0.0", 1)
    with pytest.raises(PulseError, match="expected host:port"):
        parse_addr("localhost:http")
    with pytest.raises(PulseError, match="out of range"):
        parse_addr("127.0.0.1:70000")


def test_metrics_health_and_readiness_with_its_reason() -> None:
    reason: list[str | None] = ["waiting for the group"]
    port = free_port()
    server = serve(f"127.0.0.1:{port}", lambda: reason[0])
    assert server is not None
    try:
        base = f"http://127.0.0.1:{port}"
        metrics.ES_RETRIES.labels("unit").inc(3)
        body = httpx.get(f"{base}/metrics").text
        assert 'pulse_es_retries_total{writer="unit"} 3.0' in body
        assert httpx.get(f"{base}/healthz").text == "ok\n"
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503 and "waiting for the group" in ready.text
        reason[0] = None
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/other").status_code == 404
        with pytest.raises(PulseError, match=f"127.0.0.1:{port}: cannot listen"):
            serve(f"127.0.0.1:{port}")  # the port is taken: one line
    finally:
        server.shutdown()
        server.server_close()


def test_a_readiness_check_is_cached() -> None:
    calls = []
    check = every(60, lambda: calls.append(1) or None)
    assert check() is None and check() is None
    assert len(calls) == 1


def test_json_log_lines() -> None:
    record = logging.LogRecord("pulse.aggregate", logging.WARNING, __file__, 1, "partition %d: %s", (3, "late"), None)
    line = orjson.loads(JsonLines().format(record))
    assert line["level"] == "warning" and line["logger"] == "pulse.aggregate"
    assert line["message"] == "partition 3: late" and line["ts"].endswith("+00:00")


def test_a_scraper_that_hangs_up_early_costs_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    """A client that gives up before the answer (a scrape timeout) resets the connection: the endpoint writes into
    it, says nothing and goes on serving."""
    port = free_port()
    server = serve(f"127.0.0.1:{port}", lambda: time.sleep(0.3) or None)  # type: ignore[func-returns-value]
    assert server is not None
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        time.sleep(1.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok\n"
    finally:
        server.shutdown()
    assert "Traceback" not in capfd.readouterr().err
