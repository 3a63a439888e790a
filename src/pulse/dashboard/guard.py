"""What keeps the dashboard safe to leave running: a Host header check (a page on another site cannot reach it
through DNS rebinding), security headers, and a cap on live streams, which share one snapshot per tick."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# the page loads its own scripts only; the API docs (/docs, /redoc) load Swagger UI from a CDN, so not there
CSP = (b"content-security-policy",
       b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
DOCS = ("/docs", "/redoc")


def allowed_hosts(bind_host: str, extra: str | None) -> list[str]:
    """The Host names the dashboard answers: loopback names, the bound address (unless a wildcard) and
    ``extra`` (comma-separated, ``*`` for any)."""
    hosts = list(LOCAL_HOSTS)
    if bind_host not in {"0.0.0.0", "::", ""}:
        hosts.append(bind_host)
    hosts += [h.strip() for h in (extra or "").split(",") if h.strip()]
    return hosts


class SecurityHeaders:
    """Adds :data:`HEADERS` (and the content security policy, except on the API docs) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = HEADERS if str(scope.get("path", "")).startswith(DOCS) else [*HEADERS, CSP]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class StreamLimit:
    """At most ``limit`` live streams at once (each holds a connection and a thread's worth of queries)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0

    def try_open(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def close(self) -> None:
        self.open -= 1


class SharedSnapshots:
    """One snapshot per tick and filter, shared by every stream that shows it (a hundred open pages cost one
    set of queries a second, not a hundred)."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._made: dict[object, tuple[float, Any]] = {}
        self._locks: dict[object, asyncio.Lock] = {}

    async def get(self, key: object, make: Callable[[], Awaitable[Any]]) -> Any:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            made = self._made.get(key)
            if made is None or time.monotonic() - made[0] >= self.tick_s * 0.9:
                made = self._made[key] = (time.monotonic(), await make())
            if len(self._made) > 1000:  # forget filters nobody watches any more
                stale = [k for k, (at, _) in self._made.items() if time.monotonic() - at > 60 * self.tick_s]
                for k in stale:
                    self._made.pop(k, None)
                    self._locks.pop(k, None)
            return made[1]
