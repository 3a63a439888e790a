"""Which input records count, and where: the event-time rule replayed from the input alone, in plain Python.

It shares no code with the engine's (``native/src/progress.rs``); it follows the documented rule:
- each input partition is a *source*: it judges its records in offset order against its own watermark (the
  largest event time of its on-time valid records, each capped at its record's Kafka timestamp, minus grace; or
  a floor its recorded idle decisions set, from that offset on). A valid record below it by more than the
  correction horizon is too late; below it by less, a correction (it does not move the clock). A record that
  counts, whose user Kafka's default partitioner puts in another partition, is forwarded there, saying whether
  it is a correction;
- each partition is also an *owner*: its watermark is the smallest of its sources' (its own, and every other
  partition's as their markers arrived through the repartition topic, in the order its recorded decisions say it
  took them), never going back; an idle source (or one the owner recorded as stalled, until its next watermark)
  more than the forward wait behind the most advanced one does not count. A record below it by more than the
  horizon is too late at the owner (a source that was idle and far behind). Otherwise an ``event_id`` already
  counted with event time at or above the owner watermark minus the horizon is a duplicate; anything else
  counts: as a correction if its source said so or it is below the owner watermark, else on time. A correction
  counts only in revisions of its windows, and in no funnel.
Markers are the engine's; each is checked against the source's own watermark at that point, recomputed here.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from pulse.events.schema import Event

NEVER = -(1 << 62)
"""No event time yet."""
UNCHECKED = "_unchecked"
"""A recomputed document's fields the recompute cannot know (a range's edges): the diff skips them."""


@dataclass(frozen=True)
class Floor:
    """From input offset ``offset`` on, the partition's source watermark is at least ``floor`` (if given), and the
    source is idle until its next input record (a quiet partition)."""
    offset: int
    floor: int | None
    idle: bool = False


@dataclass(frozen=True)
class Take:
    """At input offset ``offset``, the partition took the repartition topic's records before offset ``until``."""
    offset: int
    until: int


@dataclass(frozen=True)
class Stall:
    """At input offset ``offset``, the partition treated source ``source`` as idle until its next watermark."""
    offset: int
    source: int


@dataclass(frozen=True)
class Forward:
    """A forwarded record: the input record at (``partition``, ``offset``), as the repartition topic holds it
    (its value and Kafka timestamp there)."""
    partition: int
    offset: int
    record_ts: int = 0
    value: bytes | None = None
    correction: bool = False  # its source judged it a correction


@dataclass(frozen=True)
class Marker:
    """Source ``partition``'s watermark after its input up to ``offset``, as the engine sent it."""
    partition: int
    offset: int
    value: int
    idle: bool


Decision = Floor | Take | Stall
Decisions = dict[int, list[Decision]]
"""Per partition, the aggregator's recorded decisions, in the order it took them."""
Taken = tuple[int, Forward | Marker]
"""A repartition topic record as (its offset there, what it is)."""
Forwarded = dict[int, list[Taken]]
"""Per owning partition, the repartition topic's records."""


@dataclass
class Counts:
    read: int = 0  # input records
    dead_lettered: int = 0
    late: int = 0
    duplicates: int = 0
    accepted: int = 0
    forwarded: int = 0  # valid records counted by the partition that owns their user
    corrected: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in ("read", "dead_lettered", "late", "duplicates", "accepted", "forwarded", "corrected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems


ON_TIME, CORRECTION, TOO_LATE = "on time", "correction", "too late"


@dataclass
class Source:
    """A partition's clock as the source of its own input."""
    grace: int
    horizon: int = 0
    max_ts: int = NEVER
    floor: int = NEVER
    idle: bool = False

    def value(self) -> int:
        return max(self.max_ts - self.grace, self.floor)

    def judge(self, event: Event, record_ts: int) -> str:
        """``ON_TIME`` (then the clock follows it), ``CORRECTION`` or ``TOO_LATE``."""
        wm = self.value()
        if event.ts < wm:
            return TOO_LATE if event.ts < wm - self.horizon else CORRECTION
        self.max_ts = max(self.max_ts, min(event.ts, record_ts))
        return ON_TIME

    def apply(self, d: Floor) -> None:
        if d.floor is not None:
            self.floor = max(self.floor, d.floor)
        self.idle = self.idle or d.idle


@dataclass
class Owner:
    """A partition's clock as the owner of its users' records, and the ids it counted (forgotten once the
    horizon is behind them: they can never be duplicates again)."""
    partition: int
    partitions: int
    horizon: int
    forward_wait: int
    source: Source
    marks: dict[int, tuple[int, bool]] = field(default_factory=dict)
    watermark: int = NEVER
    first_seen: dict[str, int] = field(default_factory=dict)
    _expiry: list[tuple[int, str]] = field(default_factory=list)  # (event time, id), the oldest first

    _busy_min: int | None = None  # the smallest other source's watermark, when none of them is idle

    def __post_init__(self) -> None:
        if self.partitions > 1:
            self.marks = {q: (NEVER, False) for q in range(self.partitions) if q != self.partition}
        self._summarize()

    def _summarize(self) -> None:
        marks = self.marks.values()
        self._busy_min = None if any(idle for _, idle in marks) else min((v for v, _ in marks), default=None)

    def refresh(self) -> None:
        own = self.source.value()
        if not self.source.idle and self._busy_min is not None:
            low = min(own, self._busy_min)  # nothing idle: every source holds the owner back
        elif not self.source.idle and not self.marks:
            low = own
        else:
            sources = [(own, self.source.idle), *self.marks.values()]
            front = max(v for v, _ in sources)
            held = [v for v, idle in sources if not (idle and v < front - self.forward_wait)]
            if not held:
                return
            low = min(held)
        if low > self.watermark:
            self.watermark = low
            self._forget(low - self.horizon)

    def _forget(self, before: int) -> None:
        expiry, seen = self._expiry, self.first_seen
        while expiry and expiry[0][0] < before:
            ts, event_id = heapq.heappop(expiry)
            if seen.get(event_id) == ts:
                del seen[event_id]

    def mark(self, m: Marker) -> None:
        if m.partition in self.marks:
            self.marks[m.partition] = (max(self.marks[m.partition][0], m.value), m.idle)
            self._summarize()
            self.refresh()

    def stall(self, source: int) -> None:
        if source in self.marks:
            self.marks[source] = (self.marks[source][0], True)
            self._summarize()
            self.refresh()

    def take(self, event: Event, out: Counts, correction: bool = False) -> str | None:
        """How ``event`` counts here (``ON_TIME`` or ``CORRECTION``), or None; ``correction``: its source judged
        it one."""
        horizon = self.watermark - self.horizon
        if event.ts < horizon:
            out.late += 1
            return None
        first = self.first_seen.get(event.event_id)
        if first is not None and first >= horizon:
            out.duplicates += 1
            return None
        self.first_seen[event.event_id] = event.ts
        heapq.heappush(self._expiry, (event.ts, event.event_id))
        if correction or event.ts < self.watermark:
            out.corrected += 1
            return CORRECTION
        out.accepted += 1
        return ON_TIME
