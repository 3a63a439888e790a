"""Rebuild a partition's state when it is assigned: changelog to its end, then recent event ids for de-duplication.

The changelog is read with ``read_committed``, so state from an aborted or unfinished transaction never comes
back. Duplicate detection must answer on replay as it did live, so the event ids inside the duplicate horizon
are re-read from the input partition just before the committed position, rather than logged per event.
"""

from __future__ import annotations

from confluent_kafka import TopicPartition

from pulse.aggregate.state import Partition, StateConfig, remember_recent
from pulse.errors import PulseError
from pulse.kafkaio import read_range, reader

RESTORE_SLACK_MS = 5_000
"""How far before the horizon to start re-reading, for records whose event time is ahead of their timestamp."""


def restore_partition(st: Partition, cfg: StateConfig, bootstrap: str, changelog_topic: str, input_topic: str) -> int:
    """Load ``st`` from its changelog partition, then refill its duplicate-detection ids. Returns live keys."""
    records = [(offset, key, value) for offset, key, value, _ in read_range(bootstrap, changelog_topic, st.partition, 0)
               if key is not None]
    try:
        live = st.restore(records)
    except ValueError as exc:
        raise PulseError(f"{changelog_topic} partition {st.partition}: {exc}") from None
    if st.next_offset > 0:
        _refill_seen(st, cfg, bootstrap, input_topic)
    return live


def _refill_seen(st: Partition, cfg: StateConfig, bootstrap: str, input_topic: str) -> None:
    horizon = st.watermark - cfg.dedup_horizon_ms
    consumer = reader(bootstrap)
    try:
        found = consumer.offsets_for_times([TopicPartition(input_topic, st.partition,
                                                           max(0, horizon - RESTORE_SLACK_MS))], timeout=10)
        start = found[0].offset if found and found[0].offset >= 0 else st.next_offset
    finally:
        consumer.close()
    records = read_range(bootstrap, input_topic, st.partition, min(start, st.next_offset), st.next_offset)
    remember_recent(st, ((value, ts) for _, _, value, ts in records), horizon)
