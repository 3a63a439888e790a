"""Pacing: the input partitions an instance reads stay within `--forward-wait` of event time of the slowest source.

An owner closes a window only once every partition's watermark has passed it, so while one partition is read far
ahead of another (a consumer reads a backlog partition after partition) the owners keep every window since open,
and their state grows with the backlog. Pausing the partitions that run ahead, as Kafka Streams picks the record
with the smallest timestamp among its partitions, keeps open windows to that span. It changes only when records
are read, never what they count."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import Consumer, TopicPartition

from pulse.aggregate.partition import Partition

_LOG = logging.getLogger("pulse.aggregate")


def slowest(states: Mapping[int, Partition], ahead_ms: int) -> int | None:
    """The slowest source watermark this instance knows of (its partitions' own, and the others' as their markers
    arrived), leaving out idle sources that far behind the most advanced one hold nobody back."""
    known: dict[int, tuple[int, bool]] = {}
    for st in states.values():
        for q, (value, idle) in enumerate(st.marks):
            if q in states:
                continue
            if q not in known or value > known[q][0]:
                known[q] = (value, idle)
    for p, st in states.items():
        known[p] = (st.source_watermark, st.idle)
    if not known:
        return None
    front = max(v for v, _ in known.values())
    held = [v for v, idle in known.values() if not (idle and v < front - ahead_ms)]
    return min(held) if held else None


class Pacer:
    def __init__(self, consumer: Consumer, topic: str, ahead_ms: int) -> None:
        self._consumer, self._topic, self._ahead = consumer, topic, ahead_ms
        self.paused: set[int] = set()

    def pace(self, states: Mapping[int, Partition]) -> None:
        """Pause the partitions more than the span ahead of the slowest source, and resume those back within it."""
        self.paused &= set(states)
        low = slowest(states, self._ahead)
        if low is None:
            return
        ahead = {p for p, st in states.items() if st.source_watermark > low + self._ahead}
        if ahead - self.paused:
            _LOG.debug("pausing partitions %s: more than %d ms of event time ahead", sorted(ahead - self.paused),
                       self._ahead)
            self._consumer.pause([TopicPartition(self._topic, p) for p in sorted(ahead - self.paused)])
        if self.paused - ahead:
            self._consumer.resume([TopicPartition(self._topic, p) for p in sorted(self.paused - ahead)])
        self.paused = ahead

    def reset(self) -> None:
        """The assignment changed: newly assigned partitions are read unpaused."""
        self.paused = set()
