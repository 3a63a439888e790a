"""When the benchmark's untimed warm-up stops: once Pulse's time no longer improves by more than 10 %."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pulse.bench.aggregate import warmed


def test_a_single_run_is_never_steady() -> None:
    assert not warmed([])
    assert not warmed([1.4])


def test_still_improving_runs_keep_warming() -> None:
    assert not warmed([3.9, 2.5])
    assert not warmed([3.9, 2.5, 2.6, 2.2])  # 12 % faster than the best before it


def test_a_run_within_ten_percent_of_the_best_is_steady() -> None:
    assert warmed([3.9, 2.5, 2.6])
    assert warmed([1.7, 1.6])
    assert warmed([2.0, 1.81])


@given(st.lists(st.floats(0.1, 100.0), min_size=1, max_size=8), st.floats(0.1, 100.0))
def test_steady_exactly_when_the_latest_is_not_much_faster_than_every_earlier_run(
        earlier: list[float], latest: float) -> None:
    improved = all(latest < 0.9 * t for t in earlier)  # over 10 % faster than each earlier run
    assert warmed([*earlier, latest]) is not improved
