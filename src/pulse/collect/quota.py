"""A rate limit per write key: a token bucket of events, so a burst of up to a second's worth passes at once and a
client sending faster is told when to come back (429 with ``Retry-After``) rather than silently dropped."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Quota:
    def __init__(self, events_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """``events_per_s`` 0: no limit."""
        self.rate = events_per_s
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, who: str, events: int) -> float:
        """Take ``events`` from ``who``'s bucket; 0 when taken, else the seconds until they would be (nothing is
        taken then). A batch larger than the bucket is measured against a full bucket, so it passes once full."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        size = max(self.rate, 1.0)
        tokens, then = self._buckets.get(who, (size, now))
        tokens = min(size, tokens + (now - then) * self.rate)
        need = min(float(events), size)
        if tokens >= need:
            self._buckets[who] = (tokens - events, now)  # may go below zero: a large batch borrows ahead
            return 0.0
        self._buckets[who] = (tokens, now)
        return (need - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """``Retry-After`` takes whole seconds: round up, at least 1."""
    return str(max(1, math.ceil(seconds)))
