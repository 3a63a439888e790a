"""The idle rule: a partition without input for a while, and with nothing left to read, is an idle source. Its
event time goes on from its last event at the pace of the wall clock, far enough to close the open windows it
holds back (its own and those of the partitions it sends its watermark to), and it says it is idle, so that once
it is far behind the others (`--forward-wait`) it holds nobody back (an empty partition, at once). Each step
depends on timing, so it is a decision, recorded for restore and for `pulse verify`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from pulse.aggregate import decisions
from pulse.aggregate.partition import Partition

Caught = Callable[[int, Partition], bool]
"""Whether a partition has nothing left to read: its input to its end and no forwarded records waiting."""


class IdleRule:
    def __init__(self, topic: str, idle_timeout_s: float, grace_ms: int) -> None:
        self.topic, self.idle_timeout_s, self.grace_ms = topic, idle_timeout_s, grace_ms
        self._last_record: dict[int, float] = {}  # partition → when it last read an input record (monotonic)
        self._processed: dict[int, int] = {}  # input records processed per partition when last looked at

    def active(self, partition: int, now: float | None = None) -> None:
        """``partition`` read input records (or was just loaded) now."""
        self._last_record[partition] = time.monotonic() if now is None else now

    def routed(self, states: Mapping[int, Partition]) -> None:
        """Partitions that read input records since the last call count as active now."""
        now = time.monotonic()
        for p, st in states.items():
            if st.processed != self._processed.get(p):
                self._processed[p] = st.processed
                self._last_record[p] = now

    def advance(self, states: Mapping[int, Partition], now_wall: int, caught: Caught) -> dict[int, bytes]:
        """Advance the source watermark of idle partitions: no input for a while AND nothing left to read (a
        partition with a backlog is busy, not idle). A quiet partition's event time goes on from its last event at
        the pace of the wall clock, so a source that always arrives late by the same delay stays on time after a
        quiet spell; the watermark moves only as far as the end of the last open window (of any partition here)
        that it holds back. The decision goes to the changelog (restore) and, as one record per partition, to the
        decisions topic (`pulse verify`), in this flush's transaction. Returns those records by partition."""
        now = time.monotonic()
        decided: dict[int, bytes] = {}
        for p, st in states.items():
            quiet = now - self._last_record.get(p, now)
            if quiet < self.idle_timeout_s or not caught(p, st):
                continue
            last_event = st.max_event_ts
            clock = None if last_event is None else last_event + int(quiet * 1000)
            floor = None
            if clock is not None:
                ends = [end for s in states.values() if (end := s.idle_floor(clock - self.grace_ms)) is not None]
                floor = max(ends) if ends and max(ends) > st.source_watermark else None
            if st.advance_to(st.source_watermark if floor is None else floor, idle=True):
                decided[p] = decisions.encode(decisions.Decision(self.topic, p, st.next_offset, floor=floor,
                                                                 clock=clock if floor is not None else None,
                                                                 idle=True, decided_at=now_wall))
        return decided
