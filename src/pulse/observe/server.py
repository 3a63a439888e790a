"""The endpoint of a long-running command (``--metrics-addr`` / ``PULSE_METRICS_ADDR``): Prometheus metrics at
``/metrics``, ``/healthz`` (the process is alive) and ``/readyz`` (it does its job: assigned, restored, connected —
the command says what ready means)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from pulse.errors import PulseError

_LOG = logging.getLogger("pulse.observe")

Readiness = Callable[[], str | None]
"""None when ready, else why not (one line)."""


def every(seconds: float, check: Readiness) -> Readiness:
    """``check``, run at most once per ``seconds`` (probes come often; a connection check costs a round trip)."""
    last: list[tuple[float, str | None]] = []

    def cached() -> str | None:
        if not last or time.monotonic() - last[0][0] >= seconds:
            last[:] = [(time.monotonic(), check())]
        return last[0][1]

    return cached


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port``, ``:port`` or ``port``; the host defaults to 127.0.0.1."""
    host, _, port = addr.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise PulseError(f"--metrics-addr: expected host:port, got {addr!r}") from None
    if not 0 <= number <= 65535:
        raise PulseError(f"--metrics-addr: port {number} is out of range")
    return host.strip("[]") or "127.0.0.1", number


class _Handler(BaseHTTPRequestHandler):
    readiness: Readiness = staticmethod(lambda: None)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(200, b"ok\n")
        elif path == "/readyz":
            reason = type(self).readiness()
            self._reply(200, b"ready\n") if reason is None else self._reply(503, f"not ready: {reason}\n".encode())
        else:
            self._reply(404, b"see /metrics, /healthz, /readyz\n")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # a scraper that gave up waiting: its loss, not an error
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        return None


def serve(addr: str | None, readiness: Readiness = lambda: None) -> ThreadingHTTPServer | None:
    """Serve the endpoint on a daemon thread (nothing if ``addr`` is None or empty); a taken port is one line."""
    if not addr:
        return None
    host, port = parse_addr(addr)
    handler = type("Handler", (_Handler,), {"readiness": staticmethod(readiness)})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise PulseError(f"--metrics-addr {host}:{port}: cannot listen ({exc.strerror}); pick another port") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pulse-metrics", daemon=True).start()
    _LOG.info("metrics at http://%s:%d/metrics", host, server.server_address[1])
    return server


metrics_addr_option = click.option(
    "--metrics-addr", envvar="PULSE_METRICS_ADDR", default=None, metavar="HOST:PORT",
    help="Serve Prometheus metrics at /metrics, with /healthz and /readyz, on this address (e.g. 127.0.0.1:9464) "
         "[env PULSE_METRICS_ADDR; default: off].")
