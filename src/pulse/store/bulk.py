"""Bulk writes that never give up on a document: retry what is retriable, dead-letter what is not.

Shared by the aggregates writer and the event archive. A version conflict (409) means Elasticsearch already
holds the same or a newer version (or, for ``create``, the same event id): that is success. 429, 5xx and
connection errors are retried with exponential backoff and jitter (the caller holds its input meanwhile, so Kafka
is the buffer and memory stays bounded). Mapping and other document errors go to a
dead-letter topic with the error, and never crash the writer.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Producer
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, Elasticsearch, TransportError

from pulse.connect.kafka import client_config
from pulse.errors import PulseError
from pulse.kafkaio import QUIET_LOG
from pulse.observe import metrics
from pulse.topics import TopicSpec, ensure_topics

_LOG = logging.getLogger("pulse.store")

RETRY_STATUSES = {429, 500, 502, 503, 504}
SHUTDOWN_PATIENCE_S = 30.0


def transient(exc: Exception) -> bool:
    """Elasticsearch refused for a moment (overloaded, restarting, a shard still starting), not for good."""
    if isinstance(exc, ApiError):
        return exc.meta.status in RETRY_STATUSES
    return isinstance(exc, (ConnectionError, ConnectionTimeout))


@dataclass(frozen=True)
class BulkOp:
    """One document write. ``version`` set = external_gte versioning; ``create`` = first write wins."""

    index: str
    doc_id: str
    source: bytes
    version: int | None = None
    create: bool = False

    def action(self) -> bytes:
        meta: dict[str, object] = {"_index": self.index, "_id": self.doc_id}
        if self.version is not None:
            meta |= {"version": self.version, "version_type": "external_gte"}
        return orjson.dumps({"create" if self.create else "index": meta})


@dataclass
class SinkStats:
    consumed: int = 0
    writes: int = 0
    stale: int = 0  # 409: already newer (or, for create, already there)
    dead_lettered: int = 0
    bulks: int = 0
    requests: int = 0
    retries: int = 0
    outage_s: float = 0.0
    last_error: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


def dead_letter_settings() -> dict[str, object]:
    """The writers' dead-letter producer: a refused document is kept however long Kafka is away."""
    return {"enable.idempotence": True, "acks": "all", "message.timeout.ms": 0, "logger": QUIET_LOG}


class ShutdownPatience:
    """How long a stopping writer keeps retrying: `SHUTDOWN_PATIENCE_S` from the moment it saw the stop, not from
    the start of the outage, so that a stop arriving just as Elasticsearch returns still gets its retries."""

    def __init__(self, patience_s: float = SHUTDOWN_PATIENCE_S) -> None:
        self.patience_s = patience_s
        self._stop_seen: float | None = None

    def exhausted(self, stopping: bool, now: float) -> bool:
        """Give up? Asked after each failed attempt; never on the attempt that first sees the stop."""
        if not stopping:
            return False
        if self._stop_seen is None:
            self._stop_seen = now
        return now - self._stop_seen > self.patience_s


class BulkSink:
    def __init__(self, es: Elasticsearch, bootstrap: str, dlq_topic: str, stats: SinkStats, component: str) -> None:
        self.es, self.stats, self.dlq_topic = es, stats, dlq_topic
        self._bulk_seconds = metrics.ES_BULK_SECONDS.labels(component)
        self._written = metrics.ES_DOCUMENTS.labels(component)
        self._retries = metrics.ES_RETRIES.labels(component)
        self._dead = metrics.STORE_DEAD_LETTERS.labels(component)
        ensure_topics(bootstrap, [TopicSpec(dlq_topic, 1, {"retention.ms": str(7 * 86_400_000)})],
                      compare_config=False)
        self._dlq = Producer(client_config(bootstrap, dead_letter_settings(),
                                           client=f"{component.split(':')[0]}.producer"))

    def write(self, ops: list[BulkOp], stopping: Callable[[], bool] = lambda: False,
              patience: ShutdownPatience | None = None) -> None:
        """Write every op: returns once each one succeeded, was stale, or was dead-lettered (or raises once
        ``stopping`` and Elasticsearch kept failing for `SHUTDOWN_PATIENCE_S` after the stop was asked;
        ``patience``: one shared by the requests of a flush, so that a stop waits that long once, not per request)."""
        todo, delay, outage_started, patience = ops, 0.2, None, patience or ShutdownPatience()
        while todo:
            try:
                todo = self._bulk(todo)
            except (TransportError, ApiError) as exc:  # the whole request failed: node down or overloaded
                self.stats.last_error = str(exc)[:200]
            if not todo:
                break
            if outage_started is None:
                outage_started = time.monotonic()
                _LOG.warning("Elasticsearch did not take %d documents (%s); retrying with backoff", len(todo),
                             self.stats.last_error)
            if patience.exhausted(stopping(), time.monotonic()):
                raise PulseError(f"Elasticsearch still failing after {SHUTDOWN_PATIENCE_S:.0f}s at shutdown "
                                 f"({self.stats.last_error}): the documents not taken stay in Kafka, uncommitted, "
                                 f"for the next run")
            self.stats.retries += 1
            self._retries.inc()
            self._wait(delay)
            delay = min(delay * 2, 10.0)
        if outage_started is not None:
            self.stats.outage_s += time.monotonic() - outage_started
            _LOG.info("Elasticsearch took them after %.1fs", time.monotonic() - outage_started)
        if ops:
            self.stats.bulks += 1

    def close(self) -> None:
        self._dlq.flush(10)

    @staticmethod
    def _wait(seconds: float) -> None:
        time.sleep(seconds * random.uniform(0.5, 1.5))  # jitter: writers that failed together retry apart

    def _bulk(self, ops: list[BulkOp]) -> list[BulkOp]:
        """One bulk request; returns the ops to retry."""
        lines = []
        for op in ops:
            lines.append(op.action())
            lines.append(op.source)
        self.stats.requests += 1
        with self._bulk_seconds.time():
            resp = self.es.bulk(operations=b"\n".join(lines) + b"\n", refresh=False)
        retry = []
        for op, item in zip(ops, resp["items"], strict=True):
            result = next(iter(item.values()))
            status = result.get("status", 500)
            if status < 300:
                self.stats.writes += 1
                self._written.inc()
            elif status == 409:
                self.stats.stale += 1
            elif status in RETRY_STATUSES:
                retry.append(op)
                self.stats.last_error = str(result.get("error"))[:200]
            else:
                self._dead_letter(op, result.get("error"))
        return retry

    def _dead_letter(self, op: BulkOp, error: object) -> None:
        self.stats.dead_lettered += 1
        self._dead.inc()
        reason = error.get("type", "error") if isinstance(error, dict) else "error"
        _LOG.error("Elasticsearch refused %s (%s); it went to %s", op.doc_id, reason, self.dlq_topic)
        self._dlq.produce(self.dlq_topic, op.source, op.doc_id.encode(), headers=[
            ("pulse.reason", str(reason).encode()), ("pulse.detail", orjson.dumps(error)[:2048]),
            ("pulse.index", op.index.encode())])
        self._dlq.poll(0)
