"""The aggregator's Prometheus metrics, kept from what its transactions committed: records by outcome, documents,
lag, state size, flush, commit and restore times (the metrics themselves are declared in pulse.observe.metrics)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from pulse.aggregate.model import OUTCOMES
from pulse.aggregate.partition import Partition
from pulse.aggregate.transactions import Commit
from pulse.observe import metrics as m

STATE_KINDS = ("windows", "users", "sessions", "event_ids")
"""The kinds of live state entries, in the order the state's sizes give them."""

HighWatermark = Callable[[int], int | None]
"""A partition's end offset as the consumer last saw it (None while unknown)."""


class EngineMetrics:
    """Counts what each committed transaction carried; counters are this process's, from its start. The lag is
    worked out when scraped, from the committed positions and the input's ends as the consumer last fetched them."""

    def __init__(self, high: HighWatermark) -> None:
        self._high = high
        self._counted: dict[int, list[int]] = {}  # partition → its outcome counters already counted
        self._committed: dict[int, int] = {}  # partition → its committed input position
        self._caught_up_at: dict[int, float] = {}  # partition → when a commit last found it at its end
        m.LAG_RECORDS.set_function(lambda: sum(self._lag().values()))
        m.LAG_SECONDS.set_function(self._lag_seconds)

    def loaded(self, st: Partition, restore_seconds: float | None) -> None:
        """A partition's state was loaded (restored, or fresh): what it counted before is not this process's."""
        self._counted[st.partition] = st.counters.as_list()
        self._committed[st.partition] = st.next_offset
        self._caught_up_at[st.partition] = time.monotonic()
        if restore_seconds is not None:
            m.RESTORE_SECONDS.observe(restore_seconds)

    def released(self, partitions: list[int]) -> None:
        for p in partitions:
            self._counted.pop(p, None)
            self._committed.pop(p, None)
            self._caught_up_at.pop(p, None)

    def flushed(self, seconds: float) -> None:
        m.FLUSH_SECONDS.observe(seconds)

    def committed(self, commit: Commit, states: Mapping[int, Partition]) -> None:
        """A transaction committed: positions first, then the counters (a scrape reads the counters before it
        works out the lag, so counters + lag never exceed the input's end)."""
        m.TRANSACTION_SECONDS.observe(commit.seconds)
        for flushed in commit.work:
            self._committed[flushed.partition] = flushed.next_offset
        now = time.monotonic()
        for p, waiting in self._lag().items():
            if not waiting:
                self._caught_up_at[p] = now
        for flushed in commit.work:
            before = self._counted.get(flushed.partition, [0] * len(OUTCOMES))
            counters = flushed.counters.as_list()
            for outcome, count, counted in zip(OUTCOMES, counters, before, strict=True):
                if count > counted:
                    m.RECORDS.labels(outcome).inc(count - counted)
            self._counted[flushed.partition] = counters
            if flushed.forwarded:
                m.FORWARDED.inc(flushed.forwarded)
            for kind in flushed.kinds:
                m.DOCUMENTS.labels(kind).inc()
        m.PARTITIONS.set(len(states))
        sizes, footprint, pending = [0] * len(STATE_KINDS), 0, 0
        for st in states.values():
            if not st.busy:
                sizes = [a + b for a, b in zip(sizes, st.sizes.as_list(), strict=True)]
                footprint += st.state_bytes
                pending += st.pending_users()
        for kind, size in zip(STATE_KINDS, sizes, strict=True):
            m.STATE_KEYS.labels(kind).set(size)
        m.STATE_BYTES.set(footprint)
        m.USERS_PENDING.set(pending)

    def _lag(self) -> dict[int, int]:
        """Records past each partition's committed position (0 while its end is unknown)."""
        lag = {}
        for p, position in list(self._committed.items()):
            end = self._high(p)
            lag[p] = max(0, end - position) if end is not None else 0
        return lag

    def _lag_seconds(self) -> float:
        """How long since the most-behind partition was last found caught up at a commit."""
        now = time.monotonic()
        return max((now - self._caught_up_at.get(p, now) for p, waiting in self._lag().items() if waiting),
                   default=0.0)
