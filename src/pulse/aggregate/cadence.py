"""When the aggregator flushes, and what a flush publishes: the flush policy.

A live stream flushes on the interval, however busy. Reading a backlog (a full batch of records older than a couple
of flush intervals, since the last caught-up flush) flushes at most every backlog interval, and at once when the
backlog has been read to its end. Item and user documents go out on a details flush; a busy partition's user
documents at most every user interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

LIVE_AGE_FLUSHES = 2.0
"""Records younger than this many flush intervals are live traffic, however many arrive at once."""


@dataclass
class FlushPolicy:
    flush_interval_s: float
    backlog_flush_interval_s: float
    batch_size: int
    flush_records: int | None = None  # also flush after this many records (benchmarks simulating a live rate)
    detail_interval_s: float = 5.0
    detail_flushes: int | None = None  # instead: every Nth flush (benchmarks)
    user_batch: int = 1000
    user_interval_s: float = 30.0
    user_flushes: int | None = None  # instead: every Nth flush (benchmarks)
    last_flush: float = field(default_factory=time.monotonic)
    since_flush: int = 0  # records consumed since the last flush
    # the last batch was full: reading a backlog, take what has arrived rather than wait at its tail
    full: bool = False
    # behind: a full batch since the last caught-up flush, i.e. reading a backlog (timed flushes on the way do
    # not reset it, or a backlog whose last full batch met a timed flush waited a whole interval at its end)
    behind: bool = False
    stale: bool = False  # the last full batch's newest record was older than live traffic's
    _last_details: float = field(default_factory=time.monotonic)
    _users_at: dict[int, float] = field(default_factory=dict)  # partition → its user documents last went out

    @property
    def batch(self) -> int:
        return min(self.batch_size, self.flush_records or 2**62)

    @property
    def interval(self) -> float:
        return max(self.flush_interval_s, self.backlog_flush_interval_s if self.behind and self.stale else 0)

    def wait_s(self) -> float:
        """How long the next consume may wait: a flush comes on time, not 0.2 s late."""
        due = self.last_flush + self.interval - time.monotonic()
        return 0.02 if self.full else max(0.01, min(0.2, due))

    def consumed(self, records: int, newest_age_s: float | None = None) -> None:
        """``records`` came in one batch, the newest of them ``newest_age_s`` old (by its Kafka timestamp)."""
        self.full = records >= self.batch
        self.behind = self.behind or self.full
        if self.full:
            # full batches of records younger than a couple of flush intervals are a busy live stream: it keeps the
            # flush interval (the backlog's longer one would hold every event back for seconds)
            self.stale = newest_age_s is None or newest_age_s >= LIVE_AGE_FLUSHES * self.flush_interval_s
        self.since_flush += records

    def since_flush_s(self) -> float:
        return time.monotonic() - self.last_flush

    def due(self, interval: float, now_anyway: bool) -> bool:
        """A flush is due: the interval (as it was before the last consume) passed, enough records came, or the
        caller says so (a backlog read to its end, forwarded records waiting)."""
        return (time.monotonic() - self.last_flush >= interval or self.since_flush >= (self.flush_records or 2**62)
                or now_anyway)

    def flushed(self, caught_up: bool) -> None:
        self.last_flush, self.since_flush = time.monotonic(), 0
        self.behind = self.behind and not caught_up

    def details_due(self, flushes: int) -> bool:
        if self.detail_flushes:
            return (flushes + 1) % self.detail_flushes == 0
        return time.monotonic() - self._last_details >= self.detail_interval_s

    def details_sent(self) -> None:
        self._last_details = time.monotonic()

    def users_due(self, partition: int, pending: int, flushes: int) -> bool:
        """A partition's user documents go out with the details while few changed; beyond that (heavy traffic:
        one write per active user) at most every user interval, to bound write cost."""
        if pending <= self.user_batch:
            return True
        if self.user_flushes:
            return (flushes + 1) % self.user_flushes == 0
        last = self._users_at.setdefault(partition, time.monotonic())
        return time.monotonic() - last >= self.user_interval_s

    def users_sent(self, partition: int) -> None:
        self._users_at[partition] = time.monotonic()
