"""Rebuild partitions' states when they are assigned: changelog to its end, event ids for de-duplication included.

Decoding the changelog is most of a restore, so partitions assigned together are restored together: as many at a
time as the core decodes in parallel, their changelogs read side by side first (a new owner's partitions are dark
until their states are back).

The changelog is read with ``read_committed``, so state from an aborted or unfinished transaction never comes
back. Duplicate detection must answer on replay as it did live: the changelog logs the event ids within the
duplicate horizon (format 3 on: each flush the ids it remembered, by event-time hour). A changelog written before
that has none, so for it the ids are re-read from the input partition (and the repartition topic's) just before
the committed positions; late events never make a duplicate, so those the partition sent to the late-events topic
(read back over the same span) are left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, KafkaException, TopicPartition

from pulse.aggregate._core import PARALLELISM, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, restore_all
from pulse.aggregate.partition import Partition, StateConfig, remember_recent
from pulse.aggregate.repartition import read_forwarded
from pulse.aggregate.transactions import WRITER_HEADER, fence
from pulse.errors import PulseError
from pulse.kafkaio import admin_client, end_offsets, read_batches, read_messages, read_range, reader, record_at
from pulse.topics import topic_exists

_LOG = logging.getLogger("pulse.aggregate")

RESTORE_SLACK_MS = 5_000
"""How far before the horizon to start re-reading, for records whose event time is ahead of their timestamp."""


@dataclass(frozen=True)
class Sources:
    """Where a restore reads: the changelog, and for a changelog without event ids, the inputs and late events.
    ``writer``: this instance's own transactional id, never fenced."""

    bootstrap: str
    changelog: str
    input: str
    repartition: str
    late: str
    writer: str


class Fencer:
    """Fences, once each, the writers whose open transactions hold a restore's changelog reads.

    Only a partition's new owner fences, on assignment: every live member that had the partition committed its
    last flush before handing it over, so a transaction still open on its changelog is a dead writer's (or a
    zombie's the group has given up on). Its transaction would be aborted only after its timeout, keeping the
    partition dark that long; fencing its transactional id aborts it now. The writer is read from the open
    transaction's first record (``WRITER_HEADER``), never guessed, and this instance never fences itself."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources
        self._lock = threading.Lock()
        self._fenced: set[str] = set()

    def __call__(self, partition: int) -> None:
        writer = open_writer(self._sources.bootstrap, self._sources.changelog, partition)
        if writer is None or writer == self._sources.writer:
            return
        with self._lock:
            if writer in self._fenced:
                return
            self._fenced.add(writer)
            _LOG.info("partition %d: its changelog waits on a transaction left open by %s (gone?); fencing it so "
                      "that the broker aborts it now", partition, writer)
            try:
                fence(self._sources.bootstrap, writer)
            except KafkaException as exc:
                _LOG.warning("could not fence %s (%s); waiting for its transaction to time out", writer,
                             exc.args[0].str())


def open_writer(bootstrap: str, topic: str, partition: int) -> str | None:
    """The transactional id of the transaction open on a partition (the first record past its last stable
    offset names it), or None when none is open or it cannot be told."""
    try:
        admin = admin_client(bootstrap)
        stable = end_offsets(admin, topic, [partition], committed=True)[partition]
        if stable >= end_offsets(admin, topic, [partition])[partition]:
            return None
        first = record_at(bootstrap, topic, partition, stable)
    except KafkaException:
        return None
    found = dict(first.headers() or []).get(WRITER_HEADER) if first is not None else None
    return found.decode() if found is not None else None


@dataclass(frozen=True)
class Restored:
    state: Partition
    keys: int  # live changelog keys
    seconds: float  # from the start of the restore until this state was whole


def restore_partitions(states: list[Partition], cfg: StateConfig, sources: Sources,
                       assigned: bool = True) -> Iterator[Restored]:
    """Load each of ``states`` (fresh) from its changelog partition and refill its duplicate-detection ids,
    yielding each as it is whole. ``assigned``: the partitions were just assigned to this instance, which may
    then fence a dead writer's open transaction (see :class:`Fencer`); a reload after a failed transaction may
    come from an instance the group has already given up on, and only waits."""
    started = time.monotonic()
    fencer = Fencer(sources) if assigned else None
    with ThreadPoolExecutor(PARALLELISM, thread_name_prefix="pulse-restore") as pool:
        for i in range(0, len(states), PARALLELISM):
            group = states[i:i + PARALLELISM]
            # the reader threads get partition numbers: a native state belongs to the thread that made it
            began = time.monotonic()
            logs = list(pool.map(lambda p: read_changelog(sources, p, fencer), [st.partition for st in group]))
            read = time.monotonic()
            try:
                keys = restore_all(group, logs)
            except ValueError as exc:
                raise PulseError(f"{sources.changelog} {exc}") from None
            size = sum(len(key) + len(value or b"") for log in logs for _, key, value in log)
            _LOG.info("partitions %s: changelogs read in %.2fs (%.0f MiB), decoded in %.2fs",
                      [st.partition for st in group], read - began, size / 2**20, time.monotonic() - read)
            for st, n in zip(group, keys, strict=True):
                _refill_ids(st, cfg, sources)
                yield Restored(st, n, time.monotonic() - started)


Logged = tuple[int, bytes, bytes | None]
"""A changelog record as restore takes it: offset, key, value (None: a tombstone)."""


def read_changelog(sources: Sources, partition: int, held: Callable[[int], None] | None = None) -> list[Logged]:
    """The changelog partition's records, to its end once every transaction on it has ended (see ``settled``).
    ``held`` is told the partition whenever the read is held short of its end."""
    stalled = None if held is None else lambda: held(partition)
    return [(msg.offset(), key, msg.value())
            for batch in read_batches(sources.bootstrap, sources.changelog, partition, 0, settled=True,
                                      stalled=stalled)
            for msg in batch if (key := msg.key()) is not None]


def _refill_ids(st: Partition, cfg: StateConfig, sources: Sources) -> None:
    """Duplicate detection's ids within the horizon, re-read from the inputs when the changelog has none."""
    horizon = st.watermark - cfg.correct_within_ms
    if (st.next_offset == 0 and st.repartition_offset == 0) or st.ids_logged:
        return  # nothing read yet, or the changelog logged the ids within the horizon
    bootstrap, input_topic, repartition_topic = sources.bootstrap, sources.input, sources.repartition
    late = _late(bootstrap, sources.late, st.partition, horizon) if st.counters.late else set()
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
