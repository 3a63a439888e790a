"""`pulse store`: project the aggregator's committed documents into Elasticsearch, idempotently.

It reads ``<group>.aggregates`` with ``read_committed``, keeps only the newest version of each document per
flush, and bulk-writes with the document's id and ``version_type=external_gte`` (see :mod:`pulse.store.bulk`).
A replay after a crash re-sends equal or older versions: equal ones carry identical values and older ones are
rejected with 409, which counts as success, so Elasticsearch never goes backwards or double counts. Offsets
are committed only after a bulk succeeded; while Elasticsearch is down the consumer is paused (Kafka is the
buffer), so memory stays bounded by one flush. Each flush also refreshes the pipeline heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from confluent_kafka import Message
from elasticsearch import ApiError, TransportError

from pulse.connect.elasticsearch import EsConnection
from pulse.store.bulk import BulkOp, SinkStats
from pulse.store.indices import KIND_FAMILY, LIVE_FAMILIES, alias, index_for
from pulse.store.projection import Projection
from pulse.topics import aggregates_topic, store_dead_letter_topic, store_group

_LOG = logging.getLogger("pulse.store")


@dataclass(frozen=True)
class WriterConfig:
    bootstrap: str
    es: EsConnection
    group: str = "pulse-aggregator"  # the aggregator group whose documents are projected
    input_topic: str = "pulse.events"  # for the heartbeat's aggregator lag
    flush_interval_s: float = 0.25  # the aggregator already coalesces per second; this only adds latency
    max_docs: int = 5_000  # per bulk request
    max_bytes: int = 8 * 1024 * 1024  # per bulk request
    max_pending_docs: int = 100_000  # coalescing buffer: when behind, more newer versions replace older ones
    max_pending_bytes: int = 64 * 1024 * 1024
    index_prefix: str = "pulse"
    generation: int | None = None  # write concrete indices of this generation (replay), not the aliases

    @property
    def source_topic(self) -> str:
        return aggregates_topic(self.group)

    @property
    def dlq_topic(self) -> str:
        return store_dead_letter_topic(self.group)

    @property
    def consumer_group(self) -> str:
        return store_group(self.group)


@dataclass
class WriterStats(SinkStats):
    newest_flush_ms: int = 0  # newest aggregator flush written (freshness)
    newest_event_ms: int = 0


class ElasticsearchWriter(Projection[WriterStats]):
    flush_when_drained = True  # each aggregator flush arrives as one transaction: write it at once

    def __init__(self, cfg: WriterConfig, on_flush: Callable[[WriterStats], None] | None = None) -> None:
        super().__init__(cfg.bootstrap, cfg.es, cfg.consumer_group, cfg.dlq_topic, WriterStats(),
                         f"store:{cfg.group}", cfg.flush_interval_s, on_flush)
        self.cfg = cfg
        self._pending: dict[str, tuple[int, str, bytes]] = {}  # id -> (version, index, source)
        self._pending_bytes = 0
        # a replay's indices are read only once its aliases swap: their interval is soon enough
        self._live = set() if cfg.generation is not None else {alias(f, cfg.index_prefix) for f in LIVE_FAMILIES}
        self._unrefreshed: set[str] = set()

    def sources(self) -> dict[str, bool]:
        return {self.cfg.source_topic: True}

    def full(self) -> bool:
        return len(self._pending) >= self.cfg.max_pending_docs or self._pending_bytes >= self.cfg.max_pending_bytes

    def _index(self, kind: str) -> str:
        prefix = self.cfg.index_prefix
        if kind not in KIND_FAMILY:
            return f"{prefix}-unknown"  # not a Pulse kind: the strict mappings dead-letter it
        name = index_for(kind, prefix)
        return name if self.cfg.generation is None else f"{name}-{self.cfg.generation:06d}"

    def add(self, msg: Message) -> None:
        if msg.value() is not None:
            self._add(msg.key().decode(), msg.value())

    def _add(self, doc_id: str, value: bytes) -> None:
        doc = orjson.loads(value)
        version = int(doc.get("version", 0))
        current = self._pending.get(doc_id)
        if current is None or version >= current[0]:
            if current is not None:
                self._pending_bytes -= len(current[2])
            kind = doc.get("kind", "")
            if kind == "partition":
                self.stats.newest_flush_ms = max(self.stats.newest_flush_ms, doc.get("flushed_at") or 0)
                self.stats.newest_event_ms = max(self.stats.newest_event_ms, doc.get("max_event_ts") or 0)
            self._pending[doc_id] = (version, self._index(kind), value)
            self._pending_bytes += len(value)

    def take(self) -> list[list[BulkOp]]:
        """The coalesced documents, as bulk requests within the count and byte limits."""
        docs, self._pending, self._pending_bytes = self._pending, {}, 0
        requests: list[list[BulkOp]] = []
        chunk: list[BulkOp] = []
        size = 0
        for doc_id, (version, index, source) in docs.items():
            chunk.append(BulkOp(index, doc_id, source, version))
            size += len(source)
            if len(chunk) >= self.cfg.max_docs or size >= self.cfg.max_bytes:
                requests.append(chunk)
                chunk, size = [], 0
        if chunk:
            requests.append(chunk)
        return requests

    def written(self, requests: list[list[BulkOp]]) -> None:
        """Make what dashboards poll searchable now rather than at the next refresh interval."""
        written = {op.index for ops in requests for op in ops}
        self._refresh(written & self._live)
        self._unrefreshed |= written - self._live

    def finished(self) -> None:
        """What a stopping writer wrote is searchable when it exits (a batch run's readers come next)."""
        self._refresh(self._unrefreshed)
        self._unrefreshed.clear()

    def _refresh(self, indices: set[str]) -> None:
        """Best effort: the refresh interval catches up."""
        if indices:
            try:
                self.es.indices.refresh(index=sorted(indices))
            except (ApiError, TransportError) as exc:
                _LOG.debug("refresh of %s failed (%s); the refresh interval catches up", sorted(indices), exc)

    def beat(self) -> None:
        if self.cfg.generation is not None:
            return  # a replay's writer is not the pipeline's
        s, cfg = self.stats, self.cfg
        s.last_error = self.heartbeat.publish(
            self.es, cfg.index_prefix, group=cfg.group, topic=cfg.input_topic,
            aggregator_lag=self.heartbeat.lag(cfg.group, cfg.input_topic),
            aggregator_lag_s=self.heartbeat.lag_seconds(cfg.group, cfg.input_topic),
            store_lag=self.heartbeat.lag(cfg.consumer_group, cfg.source_topic),
            newest_flush_at=s.newest_flush_ms or None, newest_event_ts=s.newest_event_ms or None,
            written=s.writes, stale=s.stale, dead_lettered=s.dead_lettered, retries=s.retries,
            outage_s=round(s.outage_s, 3)) or s.last_error
