"""Rebuild a partition's state when it is assigned: changelog to its end, then recent event ids for de-duplication.

The changelog is read with ``read_committed``, so state from an aborted or unfinished transaction never comes
back. Duplicate detection must answer on replay as it did live, so the event ids inside the duplicate horizon
are re-read from the input partition just before the committed position, rather than logged per event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pulse.aggregate import changelog
from pulse.aggregate.state import PartitionState
from pulse.errors import PulseError
from pulse.events.schema import Event
from pulse.events.validate import validate

RESTORE_SLACK_MS = 5_000
"""How far before the horizon to start re-reading, for records whose event time is ahead of their timestamp."""


def _reader(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"pulse-restore-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     "enable.partition.eof": True, "fetch.max.bytes": 64 * 1024 * 1024})


def watermarks(consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0) -> tuple[int, int]:
    """(low, high) offsets, retrying while a new topic's leader is still being elected."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            if (not exc.args[0].retriable() and exc.args[0].code() not in _TRANSIENT) or time.monotonic() > deadline:
                raise PulseError(f"cannot read offsets of {topic}[{partition}]: {exc.args[0].str()}") from None
            time.sleep(0.5)


_TRANSIENT = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._UNKNOWN_PARTITION,
              KafkaError.UNKNOWN_TOPIC_OR_PART)


def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int | None = None,
               timeout_s: float = 120.0) -> Iterator[tuple[int, bytes | None, bytes | None, int]]:
    """Yield (offset, key, value, timestamp) of committed records from ``start`` up to ``end`` (or the end)."""
    consumer = _reader(bootstrap)
    try:
        low, high = watermarks(consumer, topic, partition)
        stop = high if end is None else min(end, high)
        if stop <= max(start, low):
            return
        consumer.assign([TopicPartition(topic, partition, start if start >= 0 else OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and msg.offset() >= stop:
                        return
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise PulseError(f"reading {topic}[{partition}] failed: {err.str()}")
                    continue
                if msg.offset() >= stop:
                    return
                yield msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position >= stop:
                return
        raise PulseError(f"reading {topic}[{partition}] to offset {stop} timed out after {timeout_s:.0f}s "
                         "(an open transaction from a crashed instance? it aborts within transaction.timeout.ms)")
    finally:
        consumer.close()


def restore_partition(st: PartitionState, bootstrap: str, changelog_topic: str, input_topic: str) -> int:
    """Load ``st`` from its changelog partition, then refill its duplicate-detection ids. Returns live keys."""
    records = ((key, value) for _, key, value, _ in read_range(bootstrap, changelog_topic, st.partition, 0)
               if key is not None)
    live = changelog.restore(st, records)
    if st.next_offset > 0:
        _refill_seen(st, bootstrap, input_topic)
    return live


def _refill_seen(st: PartitionState, bootstrap: str, input_topic: str) -> None:
    horizon = st.watermark.value - st.cfg.dedup_horizon_ms
    consumer = _reader(bootstrap)
    try:
        found = consumer.offsets_for_times([TopicPartition(input_topic, st.partition,
                                                           max(0, horizon - RESTORE_SLACK_MS))], timeout=10)
        start = found[0].offset if found and found[0].offset >= 0 else st.next_offset
    finally:
        consumer.close()
    seen = st.seen
    for _, _, value, ts in read_range(bootstrap, input_topic, st.partition, min(start, st.next_offset),
                                      st.next_offset):
        event = validate(value or b"", ts)
        if isinstance(event, Event) and event.ts >= horizon:
            first = seen.get(event.event_id)
            if first is None or first < horizon:
                seen[event.event_id] = event.ts
