"""One pass over one partition, as source and as owner, in the order the aggregator's recorded decisions say.

The partition's input is read once in offset order. As a *source* it judges each record against its own clock
(:class:`~pulse.verify.order.Source`), checks the watermarks it sent to other partitions against that clock, and
sums up (count and digest) what it should have forwarded to each owner. As an *owner* it takes its own users'
records, and at each recorded take the repartition topic's records up to the offset taken, and counts what its
clock and duplicate horizon let through. Nothing is held per record: forwarding is checked by comparing the
sums each pair of partitions saw (:func:`check_flows`), so a record lost, sent twice or changed on the way shows.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.generate.partitioner import cached_partition
from pulse.verify.lookahead import ALWAYS, Lookahead
from pulse.verify.order import (
    CORRECTION,
    ON_TIME,
    TOO_LATE,
    Counts,
    Decision,
    Floor,
    Forward,
    Marker,
    Owner,
    Source,
    Stall,
    Taken,
)

Row = tuple[int, bytes | None, int]
"""One input record of a partition: (offset, value, Kafka timestamp)."""
Doc = tuple[str, dict[str, Any]]
_MASK = (1 << 64) - 1
LOOK_EVERY = 1_000  # input records between two look-ahead bounds


@dataclass(frozen=True)
class Rules:
    """What decides which records count: the aggregator's settings and the input's shape."""
    grace_ms: int
    horizon_ms: int
    forward_wait_ms: int = 300_000
    partitions: int = 0  # the input's partition count; 0: every record counts where it was read
    starts: dict[int, int] = field(default_factory=dict)  # first input offset read per partition (default 0)
    unread_before_ms: int | None = None  # a range: the records before ``starts`` have record times before this


@dataclass
class Flow:
    """Records forwarded from one partition to another: how many, and an order-free digest of them; the same of
    those forwarded as corrections; and (a walk up to a time, the native one's) the same of the early ones: not
    corrections, their event time before that end. Walks stop at their own places in the input and the repartition
    topic; the sender has walked all of them once its clock passed the end, the owner has taken all of them once it
    took a watermark of the sender's past the end."""
    count: int = 0
    digest: int = 0
    corrections: int = 0
    corrections_digest: int = 0
    unsure: int = 0  # sent by a range's walk before its clock was the partition's own: perhaps not forwarded
    early: int = 0
    early_digest: int = 0
    early_unsure: int = 0

    def add(self, offset: int, value: bytes | None, correction: bool = False) -> None:
        h = int.from_bytes(hashlib.blake2b(offset.to_bytes(8, "little") + (value or b""), digest_size=8).digest(),
                           "little")
        self.count += 1
        self.digest = (self.digest + h) & _MASK
        if correction:
            self.corrections += 1
            self.corrections_digest = (self.corrections_digest + h) & _MASK


@dataclass
class Walked:
    """What one partition's walk found: its counts, and the flows it sent (by owner) and received (by source);
    walking up to a time, the partitions whose early records (:class:`Flow`) it saw whole, as their sender or
    their owner."""
    partition: int
    counts: Counts = field(default_factory=Counts)
    sent: dict[int, Flow] = field(default_factory=dict)
    received: dict[int, Flow] = field(default_factory=dict)
    early_whole: frozenset[int] = frozenset()


class Tally(Protocol):
    """What the walk hands counted events to (:class:`pulse.verify.tally.PartitionTally`)."""

    def add(self, event: Event) -> None: ...

    def correct(self, event: Event, watermark: int) -> None: ...

    def advance(self, watermark: int, owner: int) -> list[Doc]: ...


class PartitionWalk:
    """Partition ``partition``'s pass. ``sent_markers``: the watermarks it sent, as (input offset, largest value
    sent there), by offset. ``on_finished`` gets the owner watermark and the window documents it finished."""

    def __init__(self, partition: int, rules: Rules, decisions: list[Decision], sent_markers: list[tuple[int, int]],
                 tally: Tally, on_finished: Callable[[int, list[Doc]], None],
                 lookahead: Lookahead | None = None) -> None:
        self.p = partition
        self.rules = rules
        self.out = Walked(partition)
        self.owner = Owner(partition, rules.partitions, rules.horizon_ms, rules.forward_wait_ms,
                           Source(rules.grace_ms, rules.horizon_ms))
        self._decisions = list(decisions)
        self._next_decision = 0
        self._markers = list(sent_markers)
        self._next_marker = 0
        self._tally = tally
        self._on_finished = on_finished
        self._published = self.owner.watermark
        self._lookahead = lookahead
        self._look_at = 0  # the input records read when the look-ahead bound is next worked out
        self._start = self._position = rules.starts.get(partition, 0)  # the next input offset to walk
        self._taken: deque[Iterator[Taken]] = deque()  # the repartition topic records, as they were handed in
        self._pending: Taken | None = None

    def run(self, rows: Iterable[Row], taken: Iterable[Taken]) -> Walked:
        """Walk the partition's input ``rows`` (offset order) and its repartition topic records ``taken``."""
        self.feed(rows, taken)
        return self.close()

    def extend(self, decisions: Iterable[Decision], sent_markers: Iterable[tuple[int, int]]) -> None:
        """More recorded decisions and sent watermarks, later than those given so far (a followed input)."""
        del self._decisions[:self._next_decision], self._markers[:self._next_marker]
        self._next_decision = self._next_marker = 0
        self._decisions.extend(decisions)
        self._markers.extend(sent_markers)

    def feed(self, rows: Iterable[Row], taken: Iterable[Taken] = ()) -> None:
        """Walk more of the input: ``rows`` continue the partition's input in offset order, ``taken`` its
        repartition topic records. Decisions up to the last row's offset are applied; the rest wait."""
        self._taken.append(iter(taken))
        if self._pending is None:
            self._pending = self._next_taken()
        owner, source, counts, parts = self.owner, self.owner.source, self.out.counts, self.rules.partitions
        for offset, value, record_ts in rows:
            counts.read += 1
            self._decide(offset)
            self._check_markers(offset + 1)
            source.idle = False
            verdict = validate(value or b"", record_ts)
            if not isinstance(verdict, Event):
                counts.dead_lettered += 1
                continue
            judged = source.judge(verdict, record_ts)
            if judged == TOO_LATE:
                counts.late += 1
                continue
            owner.refresh()
            to = cached_partition(verdict.user_id.encode(), parts) if parts else self.p
            if to != self.p:
                counts.forwarded += 1
                flow = self.out.sent.setdefault(to, Flow())
                flow.add(offset, value, judged == CORRECTION)
                if self.rules.unread_before_ms is not None and source.max_ts < self.rules.unread_before_ms:
                    flow.unsure += 1
            else:
                self._count(verdict, owner.take(verdict, counts, judged == CORRECTION))
            self._publish()
            self._position = offset + 1
        self._decide(self._position)  # the decisions taken once the input was read up to here

    def _count(self, event: Event, how: str | None) -> None:
        if how == ON_TIME:
            self._tally.add(event)
        elif how == CORRECTION:
            self._tally.correct(event, self.owner.watermark)

    def close(self) -> Walked:
        """The end of the input: every decision left, and what was forwarded but not taken yet (the aggregator
        takes it at its next flush)."""
        self._decide(None)
        self._check_markers(None)
        self._take(None)
        self._publish()
        return self.out

    def _next_taken(self) -> Taken | None:
        while self._taken:
            item = next(self._taken[0], None)
            if item is not None:
                return item
            self._taken.popleft()
        return None

    @property
    def published(self) -> int:
        """The owner watermark up to which every window was handed out."""
        return self._published

    def _publish(self) -> None:
        """Hand out the windows nothing left to count can reach: those ending at or before the owner watermark, or
        the look-ahead bound (worked out every ``LOOK_EVERY`` records) if that is further."""
        target = self.owner.watermark
        if self._lookahead is not None and self.out.counts.read >= self._look_at:
            self._look_at = self.out.counts.read + LOOK_EVERY
            ahead = ALWAYS if self._pending is None else self._lookahead.bound(self._pending[0])
            target = max(target, min(self.owner.source.value(), ahead))
        if target > self._published:
            self._published = target
            docs = self._tally.advance(target, self.owner.watermark)
            if docs:
                self._on_finished(target, docs)

    def _decide(self, upto: int | None) -> None:
        """Apply the recorded decisions up to input offset ``upto`` (all: None)."""
        ds, owner = self._decisions, self.owner
        while self._next_decision < len(ds) and (upto is None or ds[self._next_decision].offset <= upto):
            d = ds[self._next_decision]
            self._next_decision += 1
            self._check_markers(d.offset)
            if isinstance(d, Floor):
                owner.source.apply(d)
                owner.refresh()
            elif isinstance(d, Stall):
                owner.stall(d.source)
            else:
                self._take(d.until)
            self._publish()

    def _check_markers(self, before: int | None) -> None:
        """Check the watermarks this partition sent at input offsets before ``before`` (all: None) against its
        clock there (every record before the marker's offset and every floor up to it applied)."""
        marks, source = self._markers, self.owner.source
        allowed, unread = source.value(), self.rules.unread_before_ms
        # in a range, the clock is the partition's own only once it passed every record before the range's start
        known = unread is None or source.max_ts >= unread
        while self._next_marker < len(marks) and (before is None or marks[self._next_marker][0] < before):
            offset, value = marks[self._next_marker]
            self._next_marker += 1
            if value > allowed and known and offset >= self._start:
                self.out.counts.problems.append(f"partition {self.p} sent a watermark of {value} after offset "
                                                f"{offset}, beyond its input's {allowed}")

    def _take(self, until: int | None) -> None:
        """Take the repartition topic's records before offset ``until`` (all: None)."""
        owner, counts, starts = self.owner, self.out.counts, self.rules.starts
        while self._pending is not None and (until is None or self._pending[0] < until):
            item = self._pending[1]
            self._pending = self._next_taken()
            if isinstance(item, Marker):
                owner.mark(item)
            elif item.offset >= starts.get(item.partition, 0):
                self.out.received.setdefault(item.partition, Flow()).add(item.offset, item.value, item.correction)
                verdict = validate(item.value or b"", item.record_ts)
                if isinstance(verdict, Event):
                    self._count(verdict, owner.take(verdict, counts, item.correction))
            self._publish()


def check_flows(walks: Iterable[Walked], corrections: bool = True, early: bool = False) -> list[str]:
    """Every pair of partitions must agree on what went between them: each record that counts, whose user another
    partition owns, reached it exactly once, unchanged, and (``corrections``: the senders walked their input from
    its start, so their clocks are known) said a correction exactly when its sender judged it one. ``early``: the
    walks stopped at a time, so only the early records (:class:`Flow`) are compared, of the pairs whose both sides
    saw them whole (``Walked.early_whole``)."""
    walks = list(walks)
    sent = {(w.partition, q): f for w in walks for q, f in w.sent.items()}
    received = {(p, w.partition): f for w in walks for p, f in w.received.items()}
    whole = {w.partition: w.early_whole for w in walks}
    problems = []
    for p, q in sorted(sent.keys() | received.keys()):
        if early and not (p in whole.get(p, ()) and p in whole.get(q, ())):
            continue  # the sender's clock or its watermark at the owner stayed behind the end: not all came yet
        s, r = sent.get((p, q), Flow()), received.get((p, q), Flow())
        s_count, s_digest, s_unsure = (s.early, s.early_digest, s.early_unsure) if early else \
            (s.count, s.digest, s.unsure)
        r_count, r_digest = (r.early, r.early_digest) if early else (r.count, r.digest)
        if s_unsure:  # a range's sender judged some records before its clock was known
            if not s_count - s_unsure <= r_count <= s_count:
                problems.append(f"partition {p} had {s_count:,} records of partition {q}'s users that count "
                                f"({s_unsure:,} of them judged before its clock was known); the repartition topic "
                                f"brought {r_count:,}")
        elif (s_count, s_digest) != (r_count, r_digest):
            how = "a record lost or sent twice" if s_count != r_count else "a record changed on the way"
            problems.append(f"partition {p} had {s_count:,} records of partition {q}'s users that count; the "
                            f"repartition topic brought {r_count:,} ({how})")
        elif early:
            continue  # corrections come later than the range's end
        elif corrections and (s.corrections, s.corrections_digest) != (r.corrections, r.corrections_digest):
            problems.append(f"partition {p} judged {s.corrections:,} of the records it forwarded to partition {q} "
                            f"corrections; the repartition topic said {r.corrections:,} (or other ones)")
    if sent and not received:
        problems.append("the aggregator group has no repartition records: is --group the aggregator's group?")
    return problems


def sent_markers(forwarded: Iterable[Taken]) -> dict[int, list[tuple[int, int]]]:
    """The watermarks each partition sent, as :class:`PartitionWalk` checks them."""
    best: dict[int, dict[int, int]] = {}
    for _, item in forwarded:
        if isinstance(item, Marker):
            at = best.setdefault(item.partition, {})
            at[item.offset] = max(at.get(item.offset, item.value), item.value)
    return {p: sorted(at.items()) for p, at in best.items()}


__all__ = ["Doc", "Flow", "Forward", "PartitionWalk", "Row", "Rules", "Tally", "Walked", "check_flows",
           "sent_markers"]
