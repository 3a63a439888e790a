"""A stopping writer's patience with a failing Elasticsearch counts from the stop, not from the outage's start."""

from hypothesis import given
from hypothesis import strategies as st

from pulse.store.bulk import ShutdownPatience

PATIENCE_S = 30.0


def test_a_stop_that_comes_late_in_an_outage_still_gets_its_retries() -> None:
    """The chaos run's case: Elasticsearch away for 45 s, the stop arrives as it returns."""
    patience = ShutdownPatience(PATIENCE_S)
    assert not patience.exhausted(False, 0.0)
    assert not patience.exhausted(False, 45.0)
    assert not patience.exhausted(True, 46.0)  # the attempt that sees the stop is retried
    assert not patience.exhausted(True, 76.0)
    assert patience.exhausted(True, 76.5)


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 20, allow_nan=False)), max_size=40))
def test_gives_up_only_after_the_patience_has_passed_since_the_stop(steps: list[tuple[bool, float]]) -> None:
    patience, now, stop_seen = ShutdownPatience(PATIENCE_S), 0.0, None
    for stopping, gap in steps:
        now += gap
        if stopping and stop_seen is None:
            stop_seen = now
        expected = stopping and stop_seen is not None and now - stop_seen > PATIENCE_S
        assert patience.exhausted(stopping, now) == expected
