"""Distinct users of long windows: a HyperLogLog per window and partition, merged across partitions by register
maximum, within the stated tolerance of an exact count; its document goes out only when a register rose."""

from __future__ import annotations

import orjson

from pulse.aggregate.config import StateConfig
from pulse.aggregate.model import USERS_SKETCH, MergedUsers
from pulse.aggregate.state import new_partition, route
from pulse.verify.diff import USERS_TOLERANCE
from tests.aggregate.test_state_vs_reference import flush, restored

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
