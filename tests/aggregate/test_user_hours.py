"""A user's own hourly series (the user document's ``hours``): the 24 hours up to their latest event, exact
against the reference recompute, through out-of-order events and a restart from the changelog, and readable
from a changelog written before users had hours."""

from __future__ import annotations

import random

import msgspec
import orjson

from pulse.aggregate.config import StateConfig
from pulse.aggregate.partition import new_partition, route
from pulse.verify.diff import diff_documents
from pulse.verify.reference import recompute
from tests.aggregate.test_partition_vs_reference import flush, restored

HOUR = 3_600_000
BASE = 1_795_000_000_000 // HOUR * HOUR
SIZES = (HOUR,)


def test_hours_follow_the_latest_event_and_survive_a_restart() -> None:
    rng = random.Random(7)
    rows, ts = [], BASE
    for n in range(3000):  # ~40 hours of three users' events, a few minutes out of order
        ts += rng.randint(0, 100_000)
        value = orjson.dumps({"event_id": f"e{n}", "event_type": rng.choice(["view", "click", "purchase"]),
                              "ts": ts - rng.randint(0, 300_000), "user_id": f"u{n % 3}", "session_id": f"s{n % 7}",
                              "item_id": f"i{n % 5}", "amount": 12.5})
        rows.append((0, n, value, ts))
    cfg = StateConfig(window_sizes=SIZES, grace_ms=600_000, correct_within_ms=600_000)
    st_, log, out = new_partition(0, cfg), [], {}
    for second, part in enumerate((rows[:1700], rows[1700:])):
        if second:
            st_ = restored(0, cfg, log, rows[:1700])
        for _, offset, value, record_ts in part:
            route(st_, offset, None, value, record_ts)
        flush(st_, out, log=log)
    expected = recompute(rows, SIZES, cfg.grace_ms, cfg.correct_within_ms)
    diff = diff_documents(expected, out)
    assert diff.ok, diff.summary()
    user = out["user:u0"]
    assert 20 <= len(user["hours"]) <= 24 and user["hours"][-1]["start"] == user["last_seen"] // HOUR * HOUR
    assert sum(sum(h["counts"].values()) for h in user["hours"]) < sum(user["counts"].values())


def test_a_user_logged_before_hours_restores_and_starts_its_series() -> None:
    entry = (0, "u1", (BASE, BASE + 5, [("view", 4)], 0, 0, "i1"), None)  # the entry's user tuple without hours
    st_ = new_partition(0, StateConfig(window_sizes=SIZES))
    st_.restore([(0, b"e/0", msgspec.msgpack.encode([entry]))])
    route(st_, 0, None, orjson.dumps({"event_id": "e", "event_type": "view", "ts": BASE + 10, "user_id": "u1",
                                      "session_id": "s"}), BASE + 10)
    out: dict = {}
    flush(st_, out)
    user = out["user:u1"]
    assert user["counts"] == {"view": 5} and user["first_seen"] == BASE
    assert user["hours"] == [{"start": BASE, "counts": {"view": 1}, "revenue_cents": 0, "purchases": 0}]
