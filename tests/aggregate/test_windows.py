"""Window math and the watermark rule (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulse.aggregate.windows import Watermark, label, parse_duration, parse_sizes, window_start


def test_parse_and_label_round_trip() -> None:
    assert parse_sizes("1h, 10s,1m,10s") == (10_000, 60_000, 3_600_000)
    assert [label(s) for s in (10_000, 60_000, 3_600_000, 86_400_000, 1500)] == ["10s", "1m", "1h", "1d", "1500ms"]
    for bad in ("", "10", "-1s", "0s", "5 weeks"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@given(st.integers(0, 4_000_000_000_000), st.sampled_from([1000, 10_000, 60_000, 3_600_000, 7_000]))
def test_every_timestamp_falls_in_exactly_its_window(ts: int, size: int) -> None:
    start = window_start(ts, size)
    assert start <= ts < start + size
    assert start % size == 0


@given(st.lists(st.integers(0, 10_000_000), min_size=1, max_size=200), st.integers(0, 100_000))
def test_a_final_window_never_receives_an_on_time_event(stamps: list[int], grace: int) -> None:
    wm = Watermark(grace)
    for ts in stamps:
        if wm.is_late(ts):
            continue
        # the event's window cannot already be final
        assert not wm.is_final(window_start(ts, 10_000), 10_000)
        wm.observe(ts)
    assert wm.value == max(stamps) - grace or wm.value >= max(stamps) - grace


def test_idle_advance_never_moves_backwards() -> None:
    wm = Watermark(30_000)
    wm.observe(100_000)
    assert not wm.advance_to(50_000)
    assert wm.advance_to(90_000) and wm.value == 90_000
    wm.observe(200_000)
    assert wm.value == 170_000
