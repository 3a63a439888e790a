"""Archive retention rules and index naming (pure logic)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from pulse.store.archive import DAY_MS, daily_index, expired_indices

NOW = int(dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC).timestamp() * 1000)


def test_daily_index_is_the_utc_day() -> None:
    assert daily_index("p", "events", NOW) == "p-events-2026.11.24"
    midnight = int(dt.datetime(2026, 11, 24, tzinfo=dt.UTC).timestamp() * 1000)
    assert daily_index("p", "late", midnight - 1) == "p-late-2026.11.23"


def test_only_whole_days_past_retention_expire_and_foreign_names_are_ignored() -> None:
    names = ["p-events-2026.11.24", "p-events-2026.11.17", "p-events-2026.11.16", "p-deadletter-2026.01.01",
             "p-events-garbage", "q-events-2020.01.01", "p-windows-000001"]
    assert sorted(expired_indices(names, "p", 7, NOW)) == ["p-deadletter-2026.01.01", "p-events-2026.11.16"]


@given(st.integers(0, 400), st.floats(0.5, 60))
def test_an_index_expires_exactly_when_its_day_ends_before_the_cutoff(days_ago: int, retention: float) -> None:
    ts = NOW - days_ago * DAY_MS
    name = daily_index("p", "events", ts)
    day_start = ts - ts % DAY_MS
    expected = day_start + DAY_MS <= NOW - retention * DAY_MS
    assert (name in expired_indices([name], "p", retention, NOW)) == expected
