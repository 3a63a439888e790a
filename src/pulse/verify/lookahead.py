"""How early an owner's windows can be handed out: a bound below which no record it has yet to count can fall.

The owner watermark moves only at the takes the aggregator recorded, so with takes far apart (a backlog read in
few flushes) it would hold every window open in between. But the records an owner has yet to count come from
two places, each with a lower bound known ahead:
- its own input, read later: on time at its source, so at or above its source watermark now;
- forwarded records still in the repartition topic: each was judged on time at its sender after the sender's
  watermark marker that precedes it there (a flush sends its records, then its marker), so at or above the value
  of that marker. A sender with no records left to forward does not hold anything back.
Windows that end at or before the smaller of the two are final. This affects when `verify` forgets, never what
it counts.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from pulse.verify.order import NEVER

ALWAYS = 1 << 62
"""No bound: nothing left that could fall below it."""


@dataclass
class SenderLog:
    """What one sender put in an owner's repartition partition: its markers (offset, running largest value) and
    the offsets of its batches that carry records."""
    marker_offsets: list[int] = field(default_factory=list)
    marker_values: list[int] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)

    def mark(self, offset: int, value: int) -> None:
        self.marker_offsets.append(offset)
        self.marker_values.append(max(value, self.marker_values[-1]) if self.marker_values else value)

    def carried(self, offset: int) -> None:
        if not self.batches or self.batches[-1] != offset:
            self.batches.append(offset)

    def bound(self, position: int) -> int:
        """The lowest event time a record of this sender at or after repartition offset ``position`` can have."""
        i = bisect.bisect_left(self.batches, position)
        if i == len(self.batches):
            return ALWAYS
        j = bisect.bisect_left(self.marker_offsets, self.batches[i])  # markers before that batch
        return self.marker_values[j - 1] if j else NEVER


@dataclass
class Lookahead:
    """One owner's repartition partition, indexed up to offset ``end`` (beyond it nothing is known)."""
    end: int = 0
    senders: dict[int, SenderLog] = field(default_factory=dict)

    def bound(self, position: int) -> int:
        """The lowest event time of any forwarded record at or after repartition offset ``position``."""
        if position >= self.end:
            return NEVER
        return min((log.bound(position) for log in self.senders.values()), default=ALWAYS)


Entry = tuple[int, int, int | None]
"""A repartition record as the index sees it: (offset, sender, marker value or None for a batch of records)."""


def index(entries: Iterable[Entry], end: int) -> Lookahead:
    """The look-ahead of one owner's repartition partition from its records in offset order, read up to ``end``."""
    out = Lookahead(end)
    for offset, sender, value in entries:
        log = out.senders.setdefault(sender, SenderLog())
        if value is None:
            log.carried(offset)
        else:
            log.mark(offset, value)
    return out
