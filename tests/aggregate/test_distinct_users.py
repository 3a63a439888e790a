"""Distinct users of long windows: a HyperLogLog per window and partition, merged across partitions by register
maximum, within the stated tolerance of an exact count; its document goes out only when a register rose."""

from __future__ import annotations

import orjson

from pulse.aggregate.config import StateConfig
from pulse.aggregate.model import USERS_SKETCH, MergedUsers
from pulse.aggregate.partition import new_partition, route
from pulse.verify.diff import USERS_TOLERANCE
from tests.aggregate.test_partition_vs_reference import flush, restored

DAY, HOUR = 86_400_000, 3_600_000
BASE = 1_795_000_000_000 // DAY * DAY


def _view(n: int, user: str) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "event_type": "view", "ts": BASE + n, "user_id": user,
                         "session_id": f"s{n}"})


def test_a_day_of_many_users_costs_registers_not_a_set_and_merges_across_partitions() -> None:
    cfg = StateConfig(window_sizes=(HOUR, DAY))
    users = 120_000
    merged, docs = MergedUsers(), {}
    for p in range(3):
        st_, log, out = new_partition(p, cfg), [], {}
        mine = range(p, users, 3)
        half = len(mine) // 2
        for n, u in enumerate(mine):
            if n == half:  # a restart in the middle: the registers come back from the changelog
                flush(st_, out, log=log)
                st_ = restored(p, cfg, log, [])
            route(st_, n, None, _view(n, f"user-{u}"), BASE + n)
        flush(st_, out, log=log)
        day = out[f"window:1d:{BASE}:p{p}"]
        assert day["unique_users"] is None, "a day keeps no exact set"
        assert out[f"window:1h:{BASE}:p{p}"]["unique_users"] == len(mine)
        merged.add(out[f"window_users:1d:{BASE}:p{p}"][USERS_SKETCH])
        docs.update(out)
    assert abs(merged.estimate() - users) <= USERS_TOLERANCE * users
    hour = MergedUsers()
    for p in range(3):
        hour.add(docs[f"window_users:1h:{BASE}:p{p}"][USERS_SKETCH])
    assert abs(hour.estimate() - users) <= USERS_TOLERANCE * users


def test_the_users_document_goes_out_only_when_a_register_rose() -> None:
    st_ = new_partition(0, StateConfig(window_sizes=(DAY,)))
    for n in range(50):
        route(st_, n, None, _view(n, f"u{n}"), BASE + n)
    out: dict = {}
    assert any(d.kind == "window_users" for d in flush(st_, out))
    for n in range(50, 100):
        route(st_, n, None, _view(n, f"u{n - 50}"), BASE + n)  # the same users again
    again = flush(st_, out)
    assert "window_users" not in {d.kind for d in again} and "window" in {d.kind for d in again}


def _event(n: int, user: str, ts: int) -> bytes:
    return orjson.dumps({"event_id": f"c{n}", "event_type": "view", "ts": ts, "user_id": user, "session_id": "s"})


def test_a_user_counts_once_per_window_over_its_own_documents_and_its_revisions() -> None:
    """Corrections to a closed 10 s window: a user it counted on time is not counted again, a new one is, once over
    every revision, and across a restart (the user's bitmap of the windows it was counted in is in the
    changelog). A correction to the still-open hour that comes before the user's on-time events there: the
    hour's own document leaves that user to the revision."""
    cfg = StateConfig(window_sizes=(10_000, HOUR))
    st_, log, out = new_partition(0, cfg), [], {}
    t = BASE + 5 * HOUR
    route(st_, 0, None, _event(0, "a", t + 1_000), t + 1_000)  # window [t, t+10s), on time
    route(st_, 1, None, _event(1, "x", t + 100_000), t + 100_000)  # the watermark passes t + 10 s
    flush(st_, out, log=log)
    route(st_, 2, None, _event(2, "a", t + 2_000), t + 100_000)  # correction: a, counted already
    route(st_, 3, None, _event(3, "b", t + 3_000), t + 100_000)  # correction: b, new to the window
    flush(st_, out, log=log)
    st_ = restored(0, cfg, log, [])
    route(st_, 4, None, _event(4, "b", t + 4_000), t + 100_000)  # again b: counted by the revision before
    route(st_, 5, None, _event(5, "c", t + 60_000), t + 100_000)  # correction in the open hour, then on time
    route(st_, 6, None, _event(6, "c", t + 90_000), t + 100_000)
    flush(st_, out, log=log)

    def users(window: str) -> int:
        return sum(d["unique_users"] for i, d in out.items() if i.startswith(f"window:{window}:p0"))

    assert users(f"10s:{t}") == 2  # a and b
    assert out[f"window:10s:{t}:p0"]["unique_users"] == 1
    assert users(f"1h:{t - t % HOUR}") == 4  # a, x, b, c: c's on-time event does not count it again
