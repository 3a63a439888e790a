"""The per-key rate limit (pure logic, on a fake clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pulse.collect.quota import Quota, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_a_seconds_worth_passes_then_the_rate_holds() -> None:
    clock = Clock()
    q = Quota(100, clock)
    assert q.take("k", 100) == 0
    wait = q.take("k", 10)
    assert abs(wait - 0.1) < 1e-9
    clock.now += 0.1
    assert q.take("k", 10) == 0
    assert q.take("other", 100) == 0  # each key has its own bucket
    assert retry_after(wait) == "1" and retry_after(2.2) == "3"


def test_no_limit_takes_everything() -> None:
    assert Quota(0).take("k", 10**9) == 0


@given(rate=st.integers(1, 1000), batches=st.lists(st.tuples(st.integers(1, 50), st.floats(0, 0.5)), max_size=60))
def test_what_passes_never_exceeds_a_burst_plus_the_rate(rate: int, batches: list[tuple[int, float]]) -> None:
    """An independent bound: over any run, accepted events <= bucket size + rate x elapsed + one oversize batch."""
    clock = Clock()
    q = Quota(rate, clock)
    passed = 0
    for events, gap in batches:
        clock.now += gap
        if q.take("k", events) == 0:
            passed += events
    biggest = max((e for e, _ in batches), default=0)
    assert passed <= max(rate, 1) + rate * clock.now + biggest
