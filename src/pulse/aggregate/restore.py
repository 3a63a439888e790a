"""Rebuild a partition's state when it is assigned: changelog to its end, then recent event ids for de-duplication.

The changelog is read with ``read_committed``, so state from an aborted or unfinished transaction never comes
back. Duplicate detection must answer on replay as it did live, so the event ids inside the duplicate horizon
are re-read from the input partition (and the repartition topic's) just before the committed positions, rather
than logged per event.
"""

from __future__ import annotations

from confluent_kafka import TopicPartition

from pulse.aggregate.repartition import read_forwarded
from pulse.aggregate.state import Partition, StateConfig, remember_recent
from pulse.errors import PulseError
from pulse.kafkaio import read_range, reader

RESTORE_SLACK_MS = 5_000
"""How far before the horizon to start re-reading, for records whose event time is ahead of their timestamp."""


def restore_partition(st: Partition, cfg: StateConfig, bootstrap: str, changelog_topic: str, input_topic: str,
                      repartition_topic: str) -> int:
    """Load ``st`` from its changelog partition, then refill its duplicate-detection ids. Returns live keys."""
    changelog = read_range(bootstrap, changelog_topic, st.partition, 0, settled=True)
    records = [(offset, key, value) for offset, key, value, _ in changelog if key is not None]
    try:
        live = st.restore(records)
    except ValueError as exc:
        raise PulseError(f"{changelog_topic} partition {st.partition}: {exc}") from None
    horizon = st.watermark - cfg.dedup_horizon_ms
    if st.next_offset > 0:
        start = _start(bootstrap, input_topic, st.partition, horizon, st.next_offset)
        records = read_range(bootstrap, input_topic, st.partition, start, st.next_offset)
        remember_recent(st, ((value, ts) for _, _, value, ts in records), horizon)
    if st.repartition_offset > 0:  # records other partitions forwarded here (their own ids are forwarded too)
        start = _start(bootstrap, repartition_topic, st.partition, horizon, st.repartition_offset)
        forwarded = read_forwarded(bootstrap, repartition_topic, st.partition, start, st.repartition_offset)
        remember_recent(st, ((value, origin.record_ts) for _, origin, value in forwarded), horizon)
    return live


def _start(bootstrap: str, topic: str, partition: int, horizon: int, end: int) -> int:
    """Where to re-read ``topic`` for event ids within the horizon (records are stamped no earlier than their
    event time, give or take the slack)."""
    consumer = reader(bootstrap)
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, partition, max(0, horizon - RESTORE_SLACK_MS))],
                                           timeout=10)
    finally:
        consumer.close()
    return min(found[0].offset if found and found[0].offset >= 0 else end, end)
