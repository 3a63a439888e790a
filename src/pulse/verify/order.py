"""Which input records count, and where: the event-time rule replayed from the input alone, in plain Python.

It shares no code with the engine's (``native/src/progress.rs``); it follows the documented rule:
- each input partition is a *source*: it judges its records in offset order against its own watermark (the
  largest event time of its on-time valid records, each capped at its record's Kafka timestamp, minus grace; or
  a floor its recorded idle decisions set, from that offset on). A valid record below it is late. An on-time
  record whose user Kafka's default partitioner puts in another partition is forwarded there;
- each partition is also an *owner*: its watermark is the smallest of its sources' (its own, and every other
  partition's as their markers arrived through the repartition topic, in the order its recorded decisions say it
  took them), never going back; an idle source (or one the owner recorded as stalled, until its next watermark)
  more than the forward wait behind the most advanced one does not count. A record below it is late at the
  owner (a source that was idle and far behind). Otherwise an ``event_id`` already counted with event time at
  or above the owner watermark minus the horizon is a duplicate; anything else is accepted.
Markers are the engine's; each is checked against the source's own watermark at that point, recomputed here.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pulse.events.schema import Event
from pulse.events.validate import Rejection
from pulse.generate.partitioner import partition_for

NEVER = -(1 << 62)
"""No event time yet."""

Verdict = Event | Rejection
Row = tuple[int, Verdict, int]
"""One input record of a partition: (offset, its verdict, its Kafka timestamp)."""


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
    """A forwarded record: the input record at (``partition``, ``offset``)."""
    partition: int
    offset: int


@dataclass(frozen=True)
class Marker:
    """Source ``partition``'s watermark after its input up to ``offset``, as the engine sent it."""
    partition: int
    offset: int
    value: int
    idle: bool


Decisions = dict[int, list[Floor | Take | Stall]]
"""Per partition, the aggregator's recorded decisions, in the order it took them."""
Forwarded = dict[int, list[tuple[int, Forward | Marker]]]
"""Per owning partition, the repartition topic's records as (repartition offset, what it is)."""


@dataclass
class Counts:
    dead_lettered: int = 0
    late: int = 0
    duplicates: int = 0
    accepted: int = 0
    forwarded: int = 0  # on-time valid records counted by the partition that owns their user
    problems: list[str] = field(default_factory=list)


@dataclass
class Source:
    """A partition's clock as the source of its own input."""
    grace: int
    max_ts: int = NEVER
    floor: int = NEVER
    idle: bool = False

    def value(self) -> int:
        return max(self.max_ts - self.grace, self.floor)

    def judge(self, event: Event, record_ts: int) -> bool:
        """True if ``event`` is on time (then the clock follows it)."""
        if event.ts < self.value():
            return False
        self.max_ts = max(self.max_ts, min(event.ts, record_ts))
        return True

    def apply(self, d: Floor) -> None:
        if d.floor is not None:
            self.floor = max(self.floor, d.floor)
        self.idle = self.idle or d.idle


@dataclass
class Timeline:
    """A source's watermark by input position, to check the markers it sent."""
    offsets: list[int] = field(default_factory=list)  # after the record at this offset ...
    values: list[int] = field(default_factory=list)  # ... the watermark by events
    floors: list[tuple[int, int]] = field(default_factory=list)  # (offset, floor from there on)

    def at(self, position: int) -> int:
        """The watermark once every record before ``position`` and every floor up to it applied."""
        i = bisect.bisect_left(self.offsets, position)
        value = self.values[i - 1] if i else NEVER
        j = bisect.bisect_right([o for o, _ in self.floors], position)
        return max([value, *(f for _, f in self.floors[:j])])


def judge_sources(rows: dict[int, list[Row]], decisions: Decisions, grace: int, partitions: int,
                  out: Counts) -> tuple[dict[tuple[int, int], tuple[Event, int]], dict[int, Timeline]]:
    """Every partition as a source: counts dead letters and late events, and returns the on-time records other
    partitions own, by (partition, offset), and each source's watermark timeline."""
    away: dict[tuple[int, int], tuple[Event, int]] = {}
    timelines: dict[int, Timeline] = {}
    for p, records in rows.items():
        source, line = Source(grace), Timeline()
        floors = iter(d for d in decisions.get(p, []) if isinstance(d, Floor))
        pending = next(floors, None)
        for offset, verdict, record_ts in records:
            while pending is not None and pending.offset <= offset:
                source.apply(pending)
                if pending.floor is not None:
                    line.floors.append((pending.offset, pending.floor))
                pending = next(floors, None)
            if not isinstance(verdict, Event):
                out.dead_lettered += 1
            elif not source.judge(verdict, record_ts):
                out.late += 1
            else:
                line.offsets.append(offset)
                line.values.append(source.value())
                if partitions and partition_for(verdict.user_id.encode(), partitions) != p:
                    away[(p, offset)] = (verdict, record_ts)
                    out.forwarded += 1
        while pending is not None:
            if pending.floor is not None:
                line.floors.append((pending.offset, pending.floor))
            pending = next(floors, None)
        timelines[p] = line
    return away, timelines


@dataclass
class Owner:
    """A partition's clock as the owner of its users' records, and the ids it counted."""
    partition: int
    partitions: int
    horizon: int
    forward_wait: int
    source: Source
    marks: dict[int, tuple[int, bool]] = field(default_factory=dict)
    watermark: int = NEVER
    first_seen: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.partitions > 1:
            self.marks = {q: (NEVER, False) for q in range(self.partitions) if q != self.partition}

    def refresh(self) -> None:
        sources = [(self.source.value(), self.source.idle), *self.marks.values()]
        front = max(v for v, _ in sources)
        held = [v for v, idle in sources if not (idle and v < front - self.forward_wait)]
        if held:
            self.watermark = max(self.watermark, min(held))

    def mark(self, m: Marker) -> None:
        if m.partition in self.marks:
            self.marks[m.partition] = (max(self.marks[m.partition][0], m.value), m.idle)
            self.refresh()

    def stall(self, source: int) -> None:
        if source in self.marks:
            self.marks[source] = (self.marks[source][0], True)
            self.refresh()

    def take(self, event: Event, out: Counts) -> bool:
        """True if ``event`` counts here."""
        if event.ts < self.watermark:
            out.late += 1
            return False
        first = self.first_seen.get(event.event_id)
        if first is not None and first >= self.watermark - self.horizon:
            out.duplicates += 1
            return False
        self.first_seen[event.event_id] = event.ts
        out.accepted += 1
        return True


def owned_events(p: int, rows: list[Row], decisions: list[Floor | Take | Stall],
                 taken: list[tuple[int, Forward | Marker]], away: dict[tuple[int, int], tuple[Event, int]],
                 timelines: dict[int, Timeline], grace: int, horizon: int, forward_wait: int, partitions: int,
                 out: Counts) -> Iterator[Event]:
    """The events partition ``p`` counts, in the order it counts them: its own input in offset order, with each
    recorded decision applied before the input record at its offset (a take brings in the repartition topic's
    records up to its offset), then whatever was forwarded but not taken yet."""
    owner = Owner(p, partitions, horizon, forward_wait, Source(grace))
    pending = iter(taken)
    nxt = next(pending, None)

    def repartitioned(until: int | None) -> Iterator[Event]:
        nonlocal nxt
        while nxt is not None and (until is None or nxt[0] < until):
            item = nxt[1]
            nxt = next(pending, None)
            if isinstance(item, Marker):
                line = timelines.get(item.partition)
                allowed = line.at(item.offset) if line is not None else NEVER
                if item.value > allowed:
                    out.problems.append(f"partition {item.partition} sent a watermark of {item.value} after offset "
                                        f"{item.offset}, beyond its input's {allowed}")
                owner.mark(item)
            elif (item.partition, item.offset) in away and owner.take(away[(item.partition, item.offset)][0], out):
                yield away[(item.partition, item.offset)][0]

    at = 0  # the next decision to apply

    def decided(upto: int | None) -> Iterator[Event]:
        nonlocal at
        while at < len(decisions) and (upto is None or decisions[at].offset <= upto):
            d = decisions[at]
            at += 1
            if isinstance(d, Floor):
                owner.source.apply(d)
                owner.refresh()
            elif isinstance(d, Stall):
                owner.stall(d.source)
            else:
                yield from repartitioned(d.until)

    for offset, verdict, record_ts in rows:
        yield from decided(offset)
        owner.source.idle = False
        if not isinstance(verdict, Event) or not owner.source.judge(verdict, record_ts):
            continue
        owner.refresh()
        if (not partitions or partition_for(verdict.user_id.encode(), partitions) == p) and owner.take(verdict, out):
            yield verdict
    yield from decided(None)
    yield from repartitioned(None)  # forwarded but not taken yet: the aggregator takes them at its next flush


def check_forwarding(away: Iterable[tuple[int, int]], forwarded: Forwarded, out: Counts) -> None:
    """Every on-time record whose user another partition owns must be in the repartition topic exactly once."""
    away = set(away)
    seen: dict[tuple[int, int], int] = {}
    for items in forwarded.values():
        for _, item in items:
            if isinstance(item, Forward):
                seen[(item.partition, item.offset)] = seen.get((item.partition, item.offset), 0) + 1
    missing = sorted(k for k in away if k not in seen)
    twice = sorted(k for k, n in seen.items() if n > 1)
    unknown = sorted(k for k in seen if k not in away)
    for what, keys in (("on-time input records whose user another partition owns were never forwarded to it",
                        missing),
                       ("input records were forwarded more than once", twice),
                       ("forwarded records are not on-time input records of another partition's user", unknown)):
        if keys:
            out.problems.append(f"{len(keys)} {what}, e.g. partition {keys[0][0]} offset {keys[0][1]}")
    if missing and not forwarded:
        out.problems.append("the aggregator group has no repartition topic: is --group the aggregator's group?")
