"""`pulse store`: project the aggregator's committed documents into Elasticsearch, idempotently.

It reads ``<group>.aggregates`` with ``read_committed``, keeps only the newest version of each document per
flush, and bulk-writes with the document's id and ``version_type=external_gte``. A replay after a crash
re-sends equal or older versions: equal ones carry identical values and older ones are rejected with 409,
which counts as success, so Elasticsearch never goes backwards or double counts. Offsets are committed only
after a bulk succeeded. While Elasticsearch is down the consumer is paused (Kafka is the buffer) and the
writer retries with exponential backoff and jitter; memory stays bounded by one flush.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, Producer
from elasticsearch import ApiError, Elasticsearch, TransportError

from pulse.kafkaio import group_caught_up
from pulse.store.indices import KIND_FAMILY, index_for
from pulse.topics import TopicSpec, ensure_topics

_LOG = logging.getLogger("pulse.store")
RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class WriterConfig:
    bootstrap: str
    es_url: str
    group: str = "pulse-aggregator"  # the aggregator group whose documents are projected
    flush_interval_s: float = 1.0
    max_docs: int = 5_000
    max_bytes: int = 8 * 1024 * 1024
    index_prefix: str = "pulse"

    @property
    def source_topic(self) -> str:
        return f"{self.group}.aggregates"

    @property
    def dlq_topic(self) -> str:
        return f"{self.group}.store-dlq"


@dataclass
class WriterStats:
    consumed: int = 0
    writes: int = 0
    stale: int = 0
    dead_lettered: int = 0
    bulks: int = 0
    retries: int = 0
    events_covered: int = 0
    outage_s: float = 0.0
    last_error: str | None = None
    latest: dict[str, int] = field(default_factory=dict)


class ElasticsearchWriter:
    def __init__(self, cfg: WriterConfig, on_flush: Callable[[WriterStats], None] | None = None) -> None:
        self.cfg = cfg
        self.stats = WriterStats()
        self._on_flush = on_flush
        self.es = Elasticsearch(cfg.es_url, request_timeout=30, retry_on_timeout=False, max_retries=0)
        self._consumer = Consumer({
            "bootstrap.servers": cfg.bootstrap, "group.id": f"{cfg.group}-store", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "fetch.max.bytes": 32 * 1024 * 1024, "session.timeout.ms": 6_000, "heartbeat.interval.ms": 1_500,
        })
        ensure_topics(cfg.bootstrap, [TopicSpec(cfg.dlq_topic, 1, {"retention.ms": str(7 * 86_400_000)})],
                      compare_config=False)
        self._dlq = Producer({"bootstrap.servers": cfg.bootstrap, "enable.idempotence": True, "acks": "all"})
        self._pending: dict[str, tuple[int, str, bytes]] = {}  # id -> (version, index, source)
        self._pending_bytes = 0

    def run(self, stop: threading.Event, exit_when_idle_s: float | None = None) -> WriterStats:
        self._consumer.subscribe([self.cfg.source_topic])
        last_flush = last_input = time.monotonic()
        try:
            while not stop.is_set():
                batch = self._consumer.consume(5_000, 0.2)
                for msg in batch:
                    if msg.error() is None and msg.value() is not None:
                        self._add(msg.key().decode(), msg.value())
                if batch:
                    last_input = time.monotonic()
                    self.stats.consumed += len(batch)
                full = len(self._pending) >= self.cfg.max_docs or self._pending_bytes >= self.cfg.max_bytes
                if full or time.monotonic() - last_flush >= self.cfg.flush_interval_s:
                    self.flush(stop)
                    last_flush = time.monotonic()
                if exit_when_idle_s is not None and not batch and time.monotonic() - last_input > exit_when_idle_s:
                    self.flush(stop)
                    if group_caught_up(self._consumer, self.cfg.source_topic, transactional=True):
                        break
                    last_input = time.monotonic()
            self.flush(stop)
        finally:
            self._consumer.close()
            self._dlq.flush(10)
        return self.stats

    def _add(self, doc_id: str, value: bytes) -> None:
        doc = orjson.loads(value)
        version = int(doc.get("version", 0))
        current = self._pending.get(doc_id)
        if current is None or version >= current[0]:
            if current is not None:
                self._pending_bytes -= len(current[2])
            kind = doc.get("kind", "")
            prefix = self.cfg.index_prefix
            index = index_for(kind, prefix) if kind in KIND_FAMILY else f"{prefix}-unknown"
            self._pending[doc_id] = (version, index, value)
            self._pending_bytes += len(value)

    def flush(self, stop: threading.Event | None = None) -> None:
        if not self._pending:
            return
        docs, self._pending, self._pending_bytes = self._pending, {}, 0
        todo = list(docs.items())
        delay = 0.2
        outage_started: float | None = None
        while todo:
            try:
                todo = self._bulk(todo)
            except (TransportError, ApiError) as exc:  # the whole request failed: node down or overloaded
                self.stats.last_error = str(exc)[:200]
            if not todo:
                break
            outage_started = outage_started or time.monotonic()
            self.stats.retries += 1
            self._wait(delay)
            delay = min(delay * 2, 10.0)
            if stop is not None and stop.is_set() and time.monotonic() - outage_started > 30:
                raise RuntimeError(f"Elasticsearch still failing after 30s at shutdown: {self.stats.last_error}")
        if outage_started is not None:
            self.stats.outage_s += time.monotonic() - outage_started
        self._consumer.commit(asynchronous=False)
        self.stats.bulks += 1
        if self._on_flush:
            self._on_flush(self.stats)

    def _wait(self, seconds: float) -> None:
        """Back off with jitter, keeping the consumer in its group without fetching (Kafka buffers)."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        end = time.monotonic() + seconds * random.uniform(0.5, 1.5)
        while time.monotonic() < end:
            self._consumer.poll(0.1)
        if assignment:
            self._consumer.resume(assignment)

    def _bulk(self, docs: list[tuple[str, tuple[int, str, bytes]]]) -> list[tuple[str, tuple[int, str, bytes]]]:
        """One bulk request; returns the documents to retry. Version conflicts mean 'already newer': done."""
        lines = []
        for doc_id, (version, index, source) in docs:
            lines.append(orjson.dumps({"index": {"_index": index, "_id": doc_id, "version": version,
                                                 "version_type": "external_gte"}}))
            lines.append(source)
        resp = self.es.bulk(operations=b"\n".join(lines) + b"\n", refresh=False)
        retry = []
        for (doc_id, entry), item in zip(docs, resp["items"], strict=True):
            result = item["index"]
            status = result.get("status", 500)
            if status < 300:
                self.stats.writes += 1
            elif status == 409:
                self.stats.stale += 1
            elif status in RETRY_STATUSES:
                retry.append((doc_id, entry))
                self.stats.last_error = str(result.get("error"))[:200]
            else:  # mapping and other document errors: dead-letter, never crash
                self._dead_letter(doc_id, entry[2], result.get("error"))
        return retry

    def _dead_letter(self, doc_id: str, source: bytes, error: object) -> None:
        self.stats.dead_lettered += 1
        reason = error.get("type", "error") if isinstance(error, dict) else "error"
        self._dlq.produce(self.cfg.dlq_topic, source, doc_id.encode(), headers=[
            ("pulse.reason", str(reason).encode()), ("pulse.detail", orjson.dumps(error)[:2048])])
        self._dlq.poll(0)
