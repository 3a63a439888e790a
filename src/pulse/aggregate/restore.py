"""Rebuild a partition's state when it is assigned: changelog to its end, event ids for de-duplication included.

The changelog is read with ``read_committed``, so state from an aborted or unfinished transaction never comes
back. Duplicate detection must answer on replay as it did live: the changelog logs the event ids within the
duplicate horizon (format 3 on: each flush the ids it remembered, by event-time hour). A changelog written before
that has none, so for it the ids are re-read from the input partition (and the repartition topic's) just before
the committed positions; late events never make a duplicate, so those the partition sent to the late-events topic
(read back over the same span) are left out.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_END, TopicPartition

from pulse.aggregate._core import SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER
from pulse.aggregate.partition import Partition, StateConfig, remember_recent
from pulse.aggregate.repartition import read_forwarded
from pulse.errors import PulseError
from pulse.kafkaio import read_messages, read_range, reader
from pulse.topics import topic_exists

RESTORE_SLACK_MS = 5_000
"""How far before the horizon to start re-reading, for records whose event time is ahead of their timestamp."""


def restore_partition(st: Partition, cfg: StateConfig, bootstrap: str, changelog_topic: str, input_topic: str,
                      repartition_topic: str, late_topic: str) -> int:
    """Load ``st`` from its changelog partition, then refill its duplicate-detection ids. Returns live keys."""
    changelog = read_range(bootstrap, changelog_topic, st.partition, 0, settled=True)
    records = [(offset, key, value) for offset, key, value, _ in changelog if key is not None]
    try:
        live = st.restore(records)
    except ValueError as exc:
        raise PulseError(f"{changelog_topic} partition {st.partition}: {exc}") from None
    horizon = st.watermark - cfg.correct_within_ms
    if (st.next_offset == 0 and st.repartition_offset == 0) or st.ids_logged:
        return live  # nothing read yet, or the changelog logged the ids within the horizon
    late = _late(bootstrap, late_topic, st.partition, horizon) if st.counters.late else set()
    if st.next_offset > 0:
        start = _start(bootstrap, input_topic, st.partition, horizon, st.next_offset)
        records = read_range(bootstrap, input_topic, st.partition, start, st.next_offset)
        remember_recent(st, ((value, ts) for offset, _, value, ts in records if (st.partition, offset) not in late),
                        horizon)
    if st.repartition_offset > 0:  # records other partitions forwarded here (their own ids are forwarded too)
        start = _start(bootstrap, repartition_topic, st.partition, horizon, st.repartition_offset)
        forwarded = read_forwarded(bootstrap, repartition_topic, st.partition, start, st.repartition_offset)
        remember_recent(st, ((value, origin.record_ts) for _, origin, value in forwarded
                             if origin.record_ts is not None and (origin.partition, origin.offset) not in late),
                        horizon)
    return live


def _late(bootstrap: str, late_topic: str, partition: int, horizon: int) -> set[tuple[int, int]]:
    """Where the late events this partition wrote over the horizon were read: (input partition, offset). Read as
    the changelog is (``settled``), so that it holds every late event of the state restored."""
    if not topic_exists(bootstrap, late_topic):
        return set()
    start = _start(bootstrap, late_topic, partition, horizon, None)
    out: set[tuple[int, int]] = set()
    if start < 0:  # nothing written since the horizon
        return out
    for msg in read_messages(bootstrap, late_topic, partition, start, settled=True):
        found = dict(msg.headers() or [])
        source_partition, source_offset = found.get(SOURCE_PARTITION_HEADER), found.get(SOURCE_OFFSET_HEADER)
        if source_partition is not None and source_offset is not None:
            out.add((int(source_partition), int(source_offset)))
    return out


def _start(bootstrap: str, topic: str, partition: int, horizon: int, end: int | None) -> int:
    """Where to re-read ``topic`` for event ids within the horizon (records are stamped no earlier than their
    event time, give or take the slack)."""
    consumer = reader(bootstrap)
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, partition, max(0, horizon - RESTORE_SLACK_MS))],
                                           timeout=10)
    finally:
        consumer.close()
    if end is None:
        return found[0].offset if found and found[0].offset >= 0 else OFFSET_END
    return min(found[0].offset if found and found[0].offset >= 0 else end, end)
