"""`pulse dashboard`: the built-in live page and its JSON API (FastAPI; OpenAPI at /docs and /openapi.json).

Every number comes from :mod:`pulse.store.query`, so the page, the API, `pulse verify` and the tests agree.
Inputs are validated here (lengths, characters, ranges) and reach Elasticsearch only as term/range clauses.
Live updates are server-sent events, about one per second; browsers reconnect to them by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Annotated, Any

import httpx
import orjson
from elasticsearch import ApiError, TransportError
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from pulse.connect.elasticsearch import EsConnection
from pulse.dashboard.collectors import collector_stats
from pulse.dashboard.guard import LOCAL_HOSTS, ReadTokens, SecurityHeaders, SharedSnapshots, StreamLimit
from pulse.events.schema import NAME_PATTERN
from pulse.store import query

STATIC = resources.files("pulse.dashboard") / "static"
MAX_RANGE_MS = 31 * 86_400_000
PRESETS_MS = {"5m": 300_000, "15m": 900_000, "1h": 3_600_000, "6h": 21_600_000, "24h": 86_400_000,
              "7d": 604_800_000}
Token = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[\w.:@\-]+$")]
# Dimension values as the event contract allows them; they reach Elasticsearch only inside term clauses.
Label = Annotated[str | None, Query(min_length=1, max_length=64)]
Name = Annotated[str | None, Query(max_length=32, pattern=NAME_PATTERN)]
WINDOW_NAMES = "^(" + "|".join(query.WINDOW_MS) + ")$"


class Preset(StrEnum):
    m5 = "5m"
    m15 = "15m"
    h1 = "1h"
    h6 = "6h"
    h24 = "24h"
    d7 = "7d"


@dataclass(frozen=True)
class DashboardConfig:
    es: EsConnection
    index_prefix: str = "pulse"
    push_interval_s: float = 1.0
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS  # Host header names answered (DNS rebinding); "*" for any
    max_streams: int = 100  # live streams open at once
    read_tokens: frozenset[str] = frozenset()  # none: no token asked for (loopback only)
    collectors: tuple[str, ...] = ()  # `pulse collect` base URLs whose counters the page shows


def filters(
    range: Annotated[Preset, Query(description="A preset ending now (ignored with from/to).")] = Preset.m15,
    from_ms: Annotated[int | None, Query(alias="from", ge=0, description="Custom range start, epoch ms.")] = None,
    to_ms: Annotated[int | None, Query(alias="to", ge=0, description="Custom range end, epoch ms.")] = None,
    event_type: Name = None, item: Token = None, category: Label = None, user: Token = None, status: Name = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None, device: Label = None,
) -> query.Filters:
    """Query parameters → validated filters (422 with a reason otherwise)."""
    now = int(time.time() * 1000)
    if from_ms is not None or to_ms is not None:
        start = from_ms if from_ms is not None else (to_ms or now) - PRESETS_MS["15m"]
        end = to_ms if to_ms is not None else now
    else:
        start, end = now - PRESETS_MS[range.value], now + 1
    if end <= start:
        raise HTTPException(422, "the range must end after it starts")
    if end - start > MAX_RANGE_MS:
        raise HTTPException(422, "the range may span at most 31 days")
    f = query.Filters(start, end, event_type=event_type, item_id=item, category=category, user_id=user,
                      status=status, country=country, device=device)
    if problem := f.problem():
        raise HTTPException(422, problem)
    return f


Selected = Annotated[query.Filters, Depends(filters)]


def create_app(cfg: DashboardConfig) -> FastAPI:
    es = cfg.es.client(request_timeout=10)
    prefix = cfg.index_prefix
    app = FastAPI(title="Pulse", version="1", description="Live interaction analytics from Pulse's Elasticsearch "
                  "indices. Numbers are exact merges of per-partition partials (see pulse.store.query).")
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(ReadTokens, tokens=cfg.read_tokens)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(cfg.allowed_hosts))
    streams, shared = StreamLimit(cfg.max_streams), SharedSnapshots(cfg.push_interval_s)

    @app.exception_handler(TransportError)
    @app.exception_handler(ApiError)
    async def es_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"Elasticsearch at {cfg.es.display} failed: {str(exc)[:200]}"}, status_code=503)

    http = httpx.Client()

    def health() -> dict[str, Any]:
        return query.pipeline_health(es, prefix) | {"collector": collector_stats(cfg.collectors, http)}

    def snapshot(f: query.Filters, top: int = 10) -> dict[str, Any]:
        return query.overview(es, f, prefix) | {"top_items": query.top_items(es, f, size=top, prefix=prefix),
                                                "health": health()}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    @app.get("/items/{item_id}", include_in_schema=False)
    @app.get("/users/{user_id}", include_in_schema=False)
    def detail_page() -> FileResponse:
        return FileResponse(str(STATIC / "detail.html"))

    @app.get("/api/overview", summary="KPIs, series, funnel, top items and pipeline health for one filter")
    def api_overview(f: Selected, top: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
        return snapshot(f, top)

    @app.get("/api/top-items", summary="Top items by the count of one event type")
    def api_top(f: Selected, by: Annotated[str, Query(pattern=r"^[a-z_]{1,32}$")] = "view",
                size: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict[str, Any]]:
        return query.top_items(es, f, by, size, prefix)

    @app.get("/api/revisions", summary="A window's revisions: when late events were counted into it, and how many")
    def api_revisions(window: Annotated[str, Query(pattern=WINDOW_NAMES)],
                      start: Annotated[int, Query(ge=0)]) -> list[dict[str, Any]]:
        return query.revisions_of(es, window, start, prefix)

    @app.get("/api/health", summary="Freshness, consumer lag, dead-letter and late counts, the collectors' counts")
    def api_health() -> dict[str, Any]:
        return health()

    @app.get("/api/dimensions", summary="The values each dimension has taken (for filter lists)")
    def api_dimensions() -> dict[str, list[str]]:
        return query.dimension_values(es, prefix)

    @app.get("/api/categories", summary="Known categories")
    def api_categories() -> list[str]:
        return query.categories(es, prefix)

    @app.get("/api/items/{item_id}", summary="An item's current state and its series")
    def api_item(item_id: Annotated[str, Path(max_length=64)], f: Selected) -> dict[str, Any]:
        state = query.item_detail(es, item_id, prefix)
        if state is None:
            raise HTTPException(404, f"no item {item_id!r}")
        scoped = query.Filters(f.start_ms, f.end_ms, item_id=item_id)
        return {"state": state, "overview": query.overview(es, scoped, prefix)}

    @app.get("/api/users/{user_id}", summary="A user's current state and timeline from the raw events")
    def api_user(user_id: Annotated[str, Path(max_length=64)],
                 limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        found = query.user_detail(es, user_id, limit, prefix)
        if found is None:
            raise HTTPException(404, f"no user {user_id!r}")
        return found

    @app.get("/api/stream", summary="Server-sent events: an `overview` snapshot about once a second")
    async def api_stream(request: Request, f: Selected) -> StreamingResponse:
        preset = request.query_params.get("from") is None and request.query_params.get("to") is None
        span = f.end_ms - f.start_ms
        # streams showing the same filter share one snapshot per tick (a preset's range moves with the clock)
        key = (span, *(v for k, v in vars(f).items() if k not in {"start_ms", "end_ms"})) if preset else vars(f)
        if not streams.try_open():
            raise HTTPException(503, f"{cfg.max_streams} live streams are open already (pulse dashboard "
                                     "--max-streams); close a page or poll /api/overview")

        def current() -> dict[str, Any]:
            now = int(time.time() * 1000)
            return snapshot(query.Filters(**(vars(f) | ({"start_ms": now - span + 1, "end_ms": now + 1}
                                                         if preset else {}))))

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                while not await request.is_disconnected():
                    try:
                        data = await shared.get(str(key), lambda: asyncio.to_thread(current))
                        yield b"event: overview\ndata: " + orjson.dumps(data) + b"\n\n"
                    except (TransportError, ApiError) as exc:
                        yield b"event: failure\ndata: " + orjson.dumps({"detail": str(exc)[:200]}) + b"\n\n"
                    await asyncio.sleep(cfg.push_interval_s)
            finally:
                streams.close()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return app
