"""`pulse archive`: raw events, dead letters and late events in daily Elasticsearch indices, for drill-down.

Valid input events are written with ``event_id`` as ``_id`` and ``create``, so a duplicate event (or a replay
after a crash) is a 409 and the first copy wins. Dead letters and late events come from the aggregator's
side topics with their typed reason. Indices are ``<prefix>-events|deadletter|late-YYYY.MM.DD``; because ILM
is not always present, Pulse deletes indices older than the retention itself (at start and hourly) and skips
records that would land in an already expired day.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import orjson
from confluent_kafka import Message

from pulse.aggregate._core import SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER
from pulse.connect.elasticsearch import EsConnection
from pulse.events.deadletter import DETAIL_HEADER, REASON_HEADER
from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.store.bulk import BulkOp, SinkStats
from pulse.store.indices import ARCHIVE_FAMILIES, alias
from pulse.store.projection import Projection
from pulse.topics import dead_letter_topic, late_topic, store_dead_letter_topic

DAY_MS = 86_400_000


@dataclass(frozen=True)
class ArchiveConfig:
    bootstrap: str
    es: EsConnection
    topic: str = "pulse.events"
    index_prefix: str = "pulse"
    retention_days: float = 7.0
    flush_interval_s: float = 1.0
    max_docs: int = 5_000
    group: str = "pulse-archive"
    events: bool = True  # archive valid input events (dead letters and late events always)

    @property
    def topics(self) -> list[str]:
        return ([self.topic] if self.events else []) + [dead_letter_topic(self.topic), late_topic(self.topic)]


@dataclass
class ArchiveStats(SinkStats):
    expired: int = 0
    by_family: dict[str, int] = field(default_factory=dict)


def daily_index(prefix: str, family: str, ts_ms: int) -> str:
    day = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    return f"{alias(family, prefix)}-{day:%Y.%m.%d}"


def expired_indices(names: list[str], prefix: str, retention_days: float, now_ms: int) -> list[str]:
    """Daily archive indices whose whole day is older than the retention."""
    cutoff = now_ms - retention_days * DAY_MS
    out = []
    for name in names:
        for family in ARCHIVE_FAMILIES:
            head = f"{alias(family, prefix)}-"
            if name.startswith(head):
                try:
                    day = dt.datetime.strptime(name[len(head):], "%Y.%m.%d").replace(tzinfo=dt.UTC)
                except ValueError:
                    continue
                if day.timestamp() * 1000 + DAY_MS <= cutoff:
                    out.append(name)
    return out


def _header(msg: Message, name: str) -> str | None:
    for k, v in msg.headers() or ():
        if k == name:
            return v.decode(errors="replace") if v is not None else None
    return None


class ArchiveWriter(Projection[ArchiveStats]):
    def __init__(self, cfg: ArchiveConfig, on_flush: Callable[[ArchiveStats], None] | None = None) -> None:
        super().__init__(cfg.bootstrap, cfg.es, cfg.group, store_dead_letter_topic(cfg.group), ArchiveStats(),
                         f"archive:{cfg.topic}", cfg.flush_interval_s, on_flush)
        self.cfg = cfg
        self._ops: list[BulkOp] = []
        self._last_cleanup = 0.0

    def sources(self) -> dict[str, bool]:
        """The input topic (plain producers) and the aggregator's side topics (transactional)."""
        return {t: t != self.cfg.topic for t in self.cfg.topics}

    def on_tick(self) -> None:
        if time.monotonic() - self._last_cleanup > 3600:
            self.delete_expired()

    def full(self) -> bool:
        return len(self._ops) >= self.cfg.max_docs

    def delete_expired(self) -> list[str]:
        self._last_cleanup = time.monotonic()
        pattern = ",".join(f"{alias(f, self.cfg.index_prefix)}-*" for f in ARCHIVE_FAMILIES)
        names = list(self.es.indices.get(index=pattern, expand_wildcards="open", ignore_unavailable=True))
        gone = expired_indices(names, self.cfg.index_prefix, self.cfg.retention_days, int(time.time() * 1000))
        if gone:
            self.es.indices.delete(index=",".join(gone))
        return gone

    def add(self, msg: Message) -> None:
        topic, value = msg.topic(), msg.value()
        if topic == self.cfg.topic:
            if value is None:
                return
            event = validate(value, msg.timestamp()[1])
            if isinstance(event, Event):
                self._emit("events", event.ts, event.event_id, self._event_doc(event, msg.partition(), msg.offset()))
            return
        routed = {"reason": _header(msg, REASON_HEADER) or "unknown", "detail": _header(msg, DETAIL_HEADER),
                  "routed_at": msg.timestamp()[1]}
        partition = int(_header(msg, SOURCE_PARTITION_HEADER) or -1)
        offset = int(_header(msg, SOURCE_OFFSET_HEADER) or -1)
        if topic == late_topic(self.cfg.topic):
            event = validate(value or b"", 2**62)
            if isinstance(event, Event):
                self._emit("late", event.ts, event.event_id, self._event_doc(event, partition, offset) | routed)
                return
        key = msg.key()
        # one read from the input is named by its place there; the collector's never reached it: by its own place
        doc_id = f"{partition}:{offset}" if partition >= 0 else f"{topic}:{msg.partition()}:{msg.offset()}"
        self._emit("deadletter", msg.timestamp()[1], doc_id, routed | {
            "partition": partition, "offset": offset, "key": key.decode(errors="replace") if key else None,
            "raw": (value or b"")[:4096].decode(errors="replace")})

    @staticmethod
    def _event_doc(event: Event, partition: int, offset: int) -> dict[str, object]:
        return msgspec.to_builtins(event) | {"partition": partition, "offset": offset}

    def _emit(self, family: str, ts_ms: int, doc_id: str, doc: dict[str, object]) -> None:
        if ts_ms < time.time() * 1000 - self.cfg.retention_days * DAY_MS:
            self.stats.expired += 1
            return
        self.stats.by_family[family] = self.stats.by_family.get(family, 0) + 1
        self._ops.append(BulkOp(daily_index(self.cfg.index_prefix, family, ts_ms), doc_id, orjson.dumps(doc),
                                create=True))

    def take(self) -> list[list[BulkOp]]:
        ops, self._ops = self._ops, []
        return [ops] if ops else []

    def beat(self) -> None:
        cfg, s = self.cfg, self.stats
        s.last_error = self.heartbeat.publish(
            self.es, cfg.index_prefix, group=cfg.group, topic=cfg.topic,
            store_lag=self.heartbeat.lag(cfg.group, cfg.topic), archived=s.writes, stale=s.stale,
            expired=s.expired, dead_lettered=s.dead_lettered, retries=s.retries) or s.last_error
