"""What keeps the dashboard safe to leave running: a Host header check (a page on another site cannot reach it
through DNS rebinding), security headers, and a cap on live streams, which share one snapshot per tick."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pulse.errors import PulseError

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


OPEN_PATHS = ("/api/health",)
"""Answered without a read token: health checks (Compose, load balancers) carry none, and it holds no per-user
data."""
TOKEN_COOKIE = "pulse_token"


class ReadTokens:
    """With read tokens, every other request carries one: ``Authorization: Bearer``, the ``token`` query parameter
    (a link to the page) or the cookie the page gets when opened with it (``EventSource`` cannot set headers).
    Without one: 401, and no per-user data."""

    def __init__(self, app: ASGIApp, tokens: frozenset[str]) -> None:
        self.app, self.tokens = app, tokens

    def _valid(self, token: str | None) -> bool:
        found = False
        for known in self.tokens:  # every one compared in constant time: timing tells nothing
            found |= token is not None and hmac.compare_digest(known.encode(), token.encode())
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        auth = headers.get("authorization", "")
        query = QueryParams(scope.get("query_string", b"")).get("token")
        cookie = SimpleCookie(headers.get("cookie", "")).get(TOKEN_COOKIE)
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        if self._valid(query):
            async def with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    value = f"{TOKEN_COOKIE}={query}; Path=/; HttpOnly; SameSite=Strict".encode()
                    message["headers"] = [*message.get("headers", []), (b"set-cookie", value)]
                await send(message)
            await self.app(scope, receive, with_cookie)
        elif self._valid(bearer) or self._valid(cookie.value if cookie else None):
            await self.app(scope, receive, send)
        else:
            await JSONResponse({"detail": "a read token is required (?token=..., a Bearer header or the cookie)"},
                               401)(scope, receive, send)


def read_tokens(inline: str | None, file: Path | None) -> frozenset[str]:
    """Tokens from the option or variable (comma-separated) and the file (one a line, ``#`` comments)."""
    found = [t.strip() for t in (inline or "").split(",")]
    if file is not None:
        try:
            found += [line.split("#", 1)[0].strip() for line in file.read_text().splitlines()]
        except OSError as exc:
            raise PulseError(f"cannot read the read tokens file {file}: {exc.strerror}") from None
    tokens = frozenset(t for t in found if t)
    if any(len(t) < 8 for t in tokens):
        raise PulseError("a dashboard read token needs at least 8 characters")
    return tokens
