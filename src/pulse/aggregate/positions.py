"""Where the aggregator's reading stands: its owned partitions' positions against their ends, the records other
partitions forwarded to them, and whether the whole group is done (for `--exit-when-idle`).

Every lookup here is local (the fetcher's cached high watermarks, the consumer's positions) unless it says
otherwise, so the loop can ask between batches without waiting behind in-flight fetches. The caller settles
the routing threads before it passes partition states in (their positions move while they route).
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from pulse.aggregate.partition import Partition
from pulse.aggregate.repartition import ForwardedInput
from pulse.kafkaio import end_offsets, group_assignment, group_caught_up, watermarks


class ReadPositions:
    """The owned input partitions' positions and ends, and the forwarded records waiting for them."""

    def __init__(self, consumer: Consumer, admin: AdminClient, topic: str, repartition_topic: str,
                 forwarded: ForwardedInput) -> None:
        self._consumer, self._admin, self._forwarded = consumer, admin, forwarded
        self.topic, self.repartition_topic = topic, repartition_topic

    def high(self, partition: int) -> int:
        """The input partition's end as last fetched (negative: not known yet)."""
        return self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)[1]

    def high_watermark(self, partition: int) -> int | None:
        """The end as last fetched, for the lag metric (None: unknown, or the consumer is closed)."""
        try:
            high = self.high(partition)
        except (KafkaException, RuntimeError):  # RuntimeError: the consumer is closed (a scrape while stopping)
            return None
        return high if high >= 0 else None

    def at_end(self, states: dict[int, Partition]) -> bool:
        """Every owned partition routed up to its end as last fetched."""
        for p, st in states.items():
            high = self.high(p)
            if high < 0 or st.next_offset < high:
                return False
        return True

    def read(self, partitions: list[int]) -> list[tuple[int, int, int]]:
        """(partition, consumer position, end as last fetched) of each: a partition not read from yet is at 0;
        an unknown end is negative. Needs no settled states: these are the consumer's positions."""
        positions = self._consumer.position([TopicPartition(self.topic, p) for p in partitions])
        return [(tp.partition, max(tp.offset, 0), self._consumer.get_watermark_offsets(tp, cached=True)[1])
                for tp in positions]

    def skip_passed(self, states: dict[int, Partition]) -> None:
        """Move each owned partition's input position up to the consumer's, past what a read_committed consumer
        passes without returning: transaction markers and aborted transactions. Without this, input from a
        transactional producer would never be read "to its end" (each transaction ends in a marker), so its
        committed position, the idle rule and `--exit-when-idle` would all wait for a record that never comes.

        ``states`` are settled: every record consumed is routed. The consumer's position moves past a marker only
        once the records before it were returned, and an assignment or a seek back (a reload) resets it before
        they return (tests/aggregate/test_positions_kafka.py holds librdkafka to both), so it is never ahead of
        a record not yet routed."""
        if not states:
            return
        for tp in self._consumer.position([TopicPartition(self.topic, p) for p in states]):
            st = states[tp.partition]
            if tp.offset > st.next_offset:
                st.skip_to(tp.offset)

    def fetched_to_end(self, partitions: list[int]) -> bool:
        """Every one of ``partitions`` consumed up to its end as last fetched."""
        positions = self.read(partitions)
        return bool(positions) and all(0 <= high <= position for _, position, high in positions)

    def forwarded_waiting(self, states: dict[int, Partition]) -> bool:
        """Records forwarded to an owned partition wait to be taken (as last fetched)."""
        return any(self._forwarded.pending(p, st.repartition_offset) for p, st in states.items())

    def nothing_to_read(self, partition: int, st: Partition) -> bool:
        """The partition's input is read to its end and no forwarded records wait for it (asks the broker only
        when the end is not known yet)."""
        high = self.high(partition)
        if high < 0:
            _, high = watermarks(self._consumer, self.topic, partition)
        return st.next_offset >= high and not self._forwarded.pending(partition, st.repartition_offset)

    def forwarded_drained(self, states: dict[int, Partition]) -> bool:
        """Every record forwarded to an owned partition was taken (asks the broker for the repartition topic's
        ends)."""
        positions = {p: st.repartition_offset for p, st in states.items()}
        ends = self._forwarded_ends(list(positions))
        return ends is not None and self._forwarded.drained(positions, ends)

    def _forwarded_ends(self, partitions: list[int]) -> dict[int, int] | None:
        """The repartition topic's ends; {} when it does not exist; None when that cannot be told now."""
        if not partitions:
            return {}
        try:
            return end_offsets(self._admin, self.repartition_topic, partitions)
        except KafkaException as exc:
            if exc.args[0].code() in NO_TOPIC:  # not created yet: nothing was forwarded
                return {}
            return None  # a broker away: the records forwarded meanwhile are not known to be taken


NO_TOPIC = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION})


class GroupProgress:
    """Whether the whole group is done with the input: every partition committed to its end, and owned by a live
    member (asks the broker; for `--exit-when-idle`)."""

    def __init__(self, consumer: Consumer, admin: AdminClient, topic: str, group: str,
                 session_timeout_s: float) -> None:
        self._consumer, self._admin = consumer, admin
        self.topic, self.group, self.session_timeout_s = topic, group, session_timeout_s
        self._members: frozenset[str] = frozenset()  # the group's members at the last check, and since when
        self._members_since = time.monotonic()

    def committed_to_end(self) -> bool:
        return group_caught_up(self._consumer, self._admin, self.topic, transactional=False)

    def owners_settled(self, owned: set[int]) -> bool:
        """Every input partition has a live owner that takes what is forwarded to it: this instance owns them all
        (``owned``), or the same members have owned them for a session timeout (a member SIGKILLed stays in the
        group, owning its partitions, until its session expires; then they are reassigned)."""
        owners = group_assignment(self._admin, self.group, self.topic)
        now = time.monotonic()
        members = frozenset(owners or ())
        if members != self._members:
            self._members, self._members_since = members, now
        if owners is None:
            return False
        if all(parts <= owned for parts in owners.values()):
            return True
        return now - self._members_since >= self.session_timeout_s
