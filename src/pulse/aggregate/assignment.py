"""Which input partitions this instance owns, and their states: restored from the changelog on assignment (a fresh
group skips that), dropped when lost, reloaded after a failed transaction.

A state handed over after its last flush committed is kept until the rebalance ends: if this instance gets the
partition back and nobody wrote to its changelog meanwhile, the state is current and is used as it is. A group's
rebalance revokes every partition of every member, so without this a member restores its own partitions again
whenever another one joins, leaves or dies.

Lookups made while the group's consumer runs a rebalance callback go through a second consumer of the same group
(``_lookups``), never the group's own: confluent-kafka keeps one call state per client and thread, a blocking
call on the consumer inside its own callback clears the state of the ``consume()`` that runs the callback, and
the next callback that ``consume()`` serves (a log line, an error) then aborts the process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, OFFSET_STORED, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from pulse.aggregate.config import StateConfig
from pulse.aggregate.partition import Partition, new_partition
from pulse.aggregate.repartition import ForwardedInput
from pulse.aggregate.restore import Sources, restore_partitions
from pulse.errors import PulseError
from pulse.kafkaio import end_offsets, lag_reader, offsets_at, read_batches
from pulse.kafkastart import start_where_committed
from pulse.topics import late_topic

_LOG = logging.getLogger("pulse.aggregate")

Loaded = Callable[[Partition, "float | None"], None]
"""Told of each partition loaded, with its restore time (None: nothing to restore)."""


class Assignment:
    def __init__(self, bootstrap: str, topic: str, changelog_topic: str, repartition_topic: str, state: StateConfig,
                 consumer: Consumer, admin: AdminClient, forwarded_in: ForwardedInput, loaded: Loaded, writer: str,
                 group: str, start_ms: int | None = None) -> None:
        """``writer``: this instance's transactional id; ``start_ms``: a partition without committed state starts
        at this record time (replay)."""
        self.bootstrap, self.topic, self.state = bootstrap, topic, state
        self.changelog_topic, self.repartition_topic = changelog_topic, repartition_topic
        self.start_ms = start_ms
        self._sources = Sources(bootstrap, changelog_topic, topic, repartition_topic, late_topic(topic), writer)
        self.states: dict[int, Partition] = {}
        self.restored_keys = 0
        self._consumer, self._admin, self._forwarded_in, self._loaded = consumer, admin, forwarded_in, loaded
        self._group = group
        self._lookup: Consumer | None = None  # see the module's docstring
        self._partition_count = 0  # the input topic's, read on assignment
        self._starts: dict[int, int] = {}  # partition → where it started reading without restored state
        self._kept: dict[int, tuple[Partition, int]] = {}  # handed over: its state, its changelog's end then

    def load_all(self, partitions: list[int], logged: set[int], assigned: bool = True) -> dict[int, Partition]:
        """Fresh states for ``partitions``, those in ``logged`` restored from their changelogs (``assigned``: just
        assigned, not reloaded; see ``restore_partitions``)."""
        states = {p: new_partition(p, self.state, self._partition_count) for p in partitions}
        for p in partitions:
            if p not in logged:
                self._announce(states[p], None, 0)
        restoring = [states[p] for p in partitions if p in logged]
        for done in restore_partitions(restoring, self.state, self._sources, assigned):
            _LOG.info("partition %d restored: %d keys in %.2fs", done.state.partition, done.keys, done.seconds)
            self._announce(done.state, done.seconds, done.keys)
        return states

    def _announce(self, st: Partition, seconds: float | None, keys: int) -> Partition:
        """Tell the engine of a loaded state."""
        self.restored_keys += keys
        self._loaded(st, seconds)
        return st

    def logged(self, partitions: list[int]) -> set[int]:
        """The partitions whose changelog ever had a record. A fresh group skips restore, which opens a reader per
        partition (a round trip or more each).

        A changelog that does not exist yet was never written: on assignment, any previous owner of these
        partitions has already committed, and writing needs the topic. Checking that (a fresh metadata request for
        all topics, which never auto-creates one, on the consumer's connection, not a new admin client's) lets a
        fresh group start reading before the start-up thread has created its topics.
        Otherwise one batched end-offset lookup; the topic may have been created a moment ago by the start-up
        thread, and this client's metadata may predate it, so the lookup is retried for about a second before every
        partition is restored instead (a failed first lookup would cost a whole retry backoff)."""
        topics = self._lookups().list_topics(timeout=10).topics
        if self.topic in topics:
            self._partition_count = len(topics[self.topic].partitions)
        if self.changelog_topic not in topics:
            return set()
        for delay in (0.05, 0.1, 0.2, 0.3, 0.4, None):
            try:
                ends = end_offsets(self._admin, self.changelog_topic, partitions)
            except KafkaException:
                if delay is None:
                    return set(partitions)
                time.sleep(delay)
                continue
            return {p for p, end in ends.items() if end != 0}
        return set(partitions)

    def assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Load (restore) the assigned partitions and start reading each where its state ends."""
        logged = self.logged([tp.partition for tp in partitions])
        current = self._current([tp.partition for tp in partitions])
        loaded = self.load_all([tp.partition for tp in partitions if tp.partition not in current], logged)
        fresh = []
        for tp in partitions:
            st = self.states[tp.partition] = current.get(tp.partition) or loaded[tp.partition]
            tp.offset = st.next_offset if st.next_offset > 0 else OFFSET_STORED
            if st.next_offset == 0 and self.start_ms is not None:
                fresh.append(tp)
        if fresh:
            starts = offsets_at(self._lookups(), self.topic, [tp.partition for tp in fresh], self.start_ms)
            for tp in fresh:
                tp.offset = starts[tp.partition]
        start_where_committed(self._lookups(), [tp for tp in partitions if tp.offset == OFFSET_STORED])
        for tp in partitions:
            self._starts[tp.partition] = tp.offset if tp.offset >= 0 or tp.offset == OFFSET_BEGINNING \
                else OFFSET_BEGINNING
        consumer.assign(partitions)
        self.follow_forwarded()
        _LOG.info("assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _lookups(self) -> Consumer:
        """The second consumer of the group, for lookups inside rebalance callbacks (made on first use)."""
        if self._lookup is None:
            self._lookup = lag_reader(self.bootstrap, self._group)
        return self._lookup

    def close(self) -> None:
        if self._lookup is not None:
            self._lookup.close()
            self._lookup = None

    def _current(self, partitions: list[int]) -> dict[int, Partition]:
        """The states kept from the handover that are assigned again and still current: their changelogs have no
        record after the end they had then (transaction markers at most, which a reader never sees). The rest are
        let go before anything is restored (what is not assigned again is someone else's now)."""
        kept, self._kept = {p: self._kept[p] for p in partitions if p in self._kept}, {}
        if not kept:
            return {}
        try:
            ends = end_offsets(self._admin, self.changelog_topic, list(kept))
        except KafkaException as exc:
            _LOG.info("partitions %s: their changelogs could not be checked (%s); restoring them", sorted(kept), exc)
            return {}
        current = {}
        for p, (st, end) in kept.items():
            # an end below the one recorded is a view that cannot be trusted: restore
            moved = ends[p] != end and (ends[p] < end or self._changed_since(p, end))
            if not moved:
                _LOG.info("partition %d kept: its changelog is as this instance left it (no restore)", p)
                current[p] = self._announce(st, None, 0)
        return current

    def _changed_since(self, partition: int, end: int) -> bool:
        """Whether the changelog has a record past ``end`` (waiting out a transaction still open there)."""
        try:
            return next(read_batches(self.bootstrap, self.changelog_topic, partition, end, settled=True), None) \
                is not None
        except (KafkaException, PulseError) as exc:
            _LOG.info("partition %d: its changelog could not be checked (%s); restoring it", partition, exc)
            return True

    def release(self, consumer: Consumer, partitions: list[TopicPartition], committed: bool = False) -> list[int]:
        """Drop the states of partitions handed over or lost (a lost one's uncommitted changes are redone by its
        new owner). ``committed``: the states are what their changelogs hold (handed over after a committed
        flush), kept in case they come back."""
        released = [tp.partition for tp in partitions]
        ends = self._changelog_ends(released) if committed else {}
        for p in released:
            st = self.states.pop(p, None)
            if st is not None and p in ends:
                self._kept[p] = (st, ends[p])
        consumer.unassign()
        self.follow_forwarded()
        return released

    def _changelog_ends(self, partitions: list[int]) -> dict[int, int]:
        try:
            return end_offsets(self._admin, self.changelog_topic, partitions)
        except KafkaException:  # not created yet (nothing logged), or the broker is away: keep nothing
            return {}

    def reload(self, partitions: list[int]) -> None:
        """Reload from the changelog and read the input again from there (after a failed transaction); a
        partition whose first transaction failed reads again from where it started."""
        self.states.update(self.load_all(partitions, set(partitions), assigned=False))
        for p in partitions:
            st = self.states[p]
            offset = st.next_offset if st.next_offset > 0 else self._starts.get(p, OFFSET_BEGINNING)
            try:
                self._consumer.seek(TopicPartition(self.topic, p, offset))
            except KafkaException:  # not assigned any more (the group moved on meanwhile): a rebalance follows
                _LOG.info("partition %d was not sought back: no longer assigned", p)
        self.follow_forwarded()

    def follow_forwarded(self) -> None:
        """Read the repartition topic's partitions of the owned partitions, from their states' positions."""
        self._forwarded_in.follow({p: st.repartition_offset for p, st in self.states.items()})
