"""`pulse collect`'s HTTP front door: ``POST /v1/batch`` and ``POST /v1/event``, answered only once Kafka has
every event (or its dead letter), with one result per event.

Status: 200 when every event is ``accepted`` or a ``duplicate``; 207 when results are mixed; 503 with
``Retry-After`` when none could be taken now (Kafka away, the producer's queue full); 4xx for a request refused
as a whole (its reason in the body). A write key may come in the ``X-Pulse-Key`` header, ``Authorization:
Bearer``, the body's ``key``, the ``key`` query parameter or the ``pulse_key`` cookie: ``sendBeacon`` cannot set
headers.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pulse.collect.intake import Batch, Limits, Refused, inflate, parse_batch, parse_event, prepare_all
from pulse.collect.keys import Keys, WriteKey
from pulse.collect.quota import Quota, retry_after
from pulse.collect.sender import Sender
from pulse.observe.metrics import COLLECT_EVENTS, COLLECT_REFUSED, totals

RETRY_AFTER_S = 5
GC_YOUNG = 20_000
SNIPPET = files("pulse.collect").joinpath("static/pulse.js")
ALLOWED_HEADERS = "content-type, content-encoding, x-pulse-key, authorization"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@dataclass
class CollectConfig:
    keys: Keys
    limits: Limits = field(default_factory=Limits)
    delivery_wait_s: float = 5.0  # shorter than a client's timeout: then the event's result is `retry`
    quota: Quota = field(default_factory=lambda: Quota(0))


def create_app(cfg: CollectConfig, sender: Sender) -> FastAPI:
    @asynccontextmanager
    async def serving(_: FastAPI) -> AsyncIterator[None]:
        pump = asyncio.create_task(sender.pump())
        # A request's records live until Kafka acknowledges them, long enough to be promoted through the garbage
        # collector's generations, and each full collection would walk every module loaded so far. They hold no
        # cycles: the loaded ones are set aside, and the young generation is collected less often.
        gc.freeze()
        gc.set_threshold(GC_YOUNG, 20, 100)
        try:
            yield
        finally:
            sender.stop()
            await pump

    app = FastAPI(title="Pulse collector", docs_url=None, redoc_url=None, openapi_url=None, lifespan=serving)

    def cors(origin: str | None, key: WriteKey | None) -> dict[str, str]:
        if origin is None or not (key.allows(origin) if key is not None else cfg.keys.origin_known(origin)):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}

    def refuse(status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        COLLECT_REFUSED.labels(reason).inc()
        return JSONResponse({"error": reason, "detail": detail}, status, headers=headers)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cfg.limits.body_bytes:
            raise Refused(413, "body_too_large", f"{declared} bytes > {cfg.limits.body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.limits.body_bytes:
                raise Refused(413, "body_too_large", f"over {cfg.limits.body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def key_of(request: Request, batch: Batch) -> str | None:
        auth = request.headers.get("authorization", "")
        return (request.headers.get("x-pulse-key") or (auth[7:] if auth.lower().startswith("bearer ") else None)
                or batch.key or request.query_params.get("key") or request.cookies.get("pulse_key"))

    async def collect(request: Request, single: bool) -> Response:
        received = int(time.time() * 1000)
        origin = request.headers.get("origin")
        try:
            text = inflate(await read_body(request), request.headers.get("content-encoding"), cfg.limits)
            batch = parse_event(text) if single else parse_batch(text, cfg.limits)
        except Refused as refused:
            return refuse(refused.status, refused.reason, refused.detail, cors(origin, None))
        key = cfg.keys.find(key_of(request, batch))
        if cfg.keys.required and key is None:
            return refuse(401, "bad_key", "a valid write key is required", cors(origin, None))
        if origin is not None and key is not None and not key.allows(origin):
            return refuse(403, "origin_not_allowed", f"this key does not allow origin {origin}")
        wait = cfg.quota.take(key.secret if key is not None else "", len(batch.events))
        if wait:
            return refuse(429, "rate_limited", f"over {cfg.quota.rate:g} events/s for this key",
                          {"Retry-After": retry_after(wait), **cors(origin, key)})
        if not sender.ready:
            return refuse(503, "kafka_unavailable", "Kafka is unreachable; retry later",
                          {"Retry-After": str(RETRY_AFTER_S), **cors(origin, key)})
        prepared = prepare_all(batch.events, batch.sent_at, received)
        results = await sender.send(prepared, received, cfg.delivery_wait_s)
        counted = Counter(r["result"] for r in results)
        for result, n in counted.items():
            COLLECT_EVENTS.labels(result).inc(n)
        kinds = set(counted)
        headers = cors(origin, key)
        if kinds <= {"accepted", "duplicate"}:
            status = 200
        elif kinds == {"retry"}:
            status, headers = 503, {"Retry-After": str(RETRY_AFTER_S), **headers}
        else:
            status = 207
        return JSONResponse({"results": results}, status, headers=headers)

    @app.post("/v1/batch")
    async def post_batch(request: Request) -> Response:
        return await collect(request, single=False)

    @app.post("/v1/event")
    async def post_event(request: Request) -> Response:
        return await collect(request, single=True)

    @app.options("/v1/batch")
    @app.options("/v1/event")
    async def preflight(request: Request) -> Response:
        origin = request.headers.get("origin")
        allowed = cors(origin, cfg.keys.find(request.query_params.get("key")))
        if not allowed:
            return refuse(403, "origin_not_allowed", f"origin {origin} is not allowed")
        return Response(status_code=204, headers={**allowed, "Access-Control-Allow-Methods": "POST",
                                                  "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                                                  "Access-Control-Max-Age": "600"})

    script = SNIPPET.read_bytes()

    @app.get("/pulse.js")
    async def snippet() -> Response:
        """The browser snippet: any page may load it (its events still need a key that allows the page)."""
        return Response(script, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if sender.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "kafka unreachable"}, 503, headers={"Retry-After": str(RETRY_AFTER_S)})

    started = int(time.time() * 1000)

    @app.get("/stats")
    async def stats() -> Response:
        """This process's counts since it started, for the dashboard (the same numbers as /metrics)."""
        return JSONResponse({"events": totals(COLLECT_EVENTS, "result"), "refused": totals(COLLECT_REFUSED, "reason"),
                             "ready": sender.ready, "since": started})

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
