"""When the aggregator flushes, and what a flush publishes: the flush policy.

A live stream flushes on the interval, however busy. Reading a backlog (a full batch of records older than a couple
of flush intervals, since the last caught-up flush) flushes at most every backlog interval, and at once when the
backlog has been read to its end. Item documents go out on a details flush. User documents go out every flush,
oldest change first, as many as a budget allows: a share of the events the partition accepted since its last flush,
and at least a floor; so they cost the same per event at any rate, and a user's document is as fresh as the
queue of changed users ahead of it allows.
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
    # user documents per 1000 events accepted: with the floor and the max delay (`StateConfig.user_max_delay_ms`)
    # this keeps users a minority of what Elasticsearch indexes at any rate
    user_writes_per_1000: float = 3.0
    user_floor: int = 2  # user documents a partition may publish on any flush, however few events came
    last_flush: float = field(default_factory=time.monotonic)
    since_flush: int = 0  # records consumed since the last flush
    # the last batch was full: reading a backlog, take what has arrived rather than wait at its tail
    full: bool = False
    # behind: a full batch since the last caught-up flush, i.e. reading a backlog (timed flushes on the way do
    # not reset it, or a backlog whose last full batch met a timed flush waited a whole interval at its end)
    behind: bool = False
    stale: bool = False  # the last full batch's newest record was older than live traffic's
    _last_details: float = field(default_factory=time.monotonic)
    _accepted: dict[int, int] = field(default_factory=dict)  # partition → its accepted count at the last budget

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

    def users_budget(self, partition: int, accepted: int) -> int:
        """How many of ``partition``'s pending user documents this flush publishes, given how many events it has
        accepted in all (``accepted``)."""
        since = accepted - self._accepted.get(partition, accepted)
        self._accepted[partition] = accepted
        return max(self.user_floor, int(since * self.user_writes_per_1000 / 1000))
