"""Window sizes, and the watermark rule as the native core applies it."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulse.aggregate.partition import StateConfig, new_partition, route
from pulse.aggregate.windows import label, parse_sizes


def test_parse_and_label_round_trip() -> None:
    assert parse_sizes("1h, 10s,1m,10s") == (10_000, 60_000, 3_600_000)
    assert [label(s) for s in (10_000, 60_000, 3_600_000, 86_400_000, 1500)] == ["10s", "1m", "1h", "1d", "1500ms"]
    assert parse_sizes("10, 1.5s") == (1500, 10_000)  # the one duration spelling: a bare number is seconds
    for bad in ("", "-1s", "0s", "5 weeks", "0.1ms", ","):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def _event(ts: int, n: int) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "event_type": "view", "ts": ts, "user_id": "u", "session_id": "s"})


@given(st.lists(st.integers(1_800_000_000_000, 1_800_000_100_000), min_size=1, max_size=60), st.integers(0, 20_000),
       st.integers(0, 60_000))
def test_the_watermark_is_the_largest_time_seen_minus_grace(stamps: list[int], grace: int, horizon: int) -> None:
    """Below the watermark by up to the correction horizon: a correction; further: too late."""
    part = new_partition(0, StateConfig(window_sizes=(10_000,), grace_ms=grace, correct_within_ms=horizon))
    late = corrected = 0
    for n, ts in enumerate(stamps):
        late += ts < part.watermark - horizon
        corrected += part.watermark - horizon <= ts < part.watermark
        route(part, n, None, _event(ts, n), 1_800_000_100_000)
    assert part.watermark == max(stamps) - grace
    c = part.counters
    assert (c.late, c.corrected, c.accepted) == (late, corrected, len(stamps) - late - corrected)


def test_idle_advance_never_moves_backwards() -> None:
    part = new_partition(0, StateConfig(grace_ms=30_000))
    route(part, 0, None, _event(1_800_000_100_000, 0), 1_800_000_100_000)
    assert part.watermark == 1_800_000_070_000
    assert not part.advance_to(1_800_000_050_000)
    assert part.advance_to(1_800_000_090_000) and part.watermark == 1_800_000_090_000
    route(part, 1, None, _event(1_800_000_200_000, 1), 1_800_000_200_000)
    assert part.watermark == 1_800_000_170_000


def test_an_event_exactly_at_the_watermark_is_on_time() -> None:
    part = new_partition(0, StateConfig(grace_ms=30_000, correct_within_ms=60_000))
    now = 1_800_000_100_000
    route(part, 0, None, _event(now, 0), now)
    route(part, 1, None, _event(now - 30_000, 1), now)  # == watermark: on time
    route(part, 2, None, _event(now - 30_001, 2), now)  # below it: a correction
    route(part, 3, None, _event(now - 90_000, 3), now)  # == watermark - horizon: a correction
    route(part, 4, None, _event(now - 90_001, 4), now)  # below that: too late
    c = part.counters
    assert (c.accepted, c.corrected, c.late) == (2, 2, 1)
