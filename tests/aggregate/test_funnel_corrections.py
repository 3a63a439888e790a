"""A correction joins its session's funnel while the session is held, and counts in revisions only.

The stated rule (docs/late-events.md): a late ok event of a session whose latest on-time event is within the session
timeout before the owner watermark sits after the session's settled events and before its open ones; it counts its
step if that is the run's next one, and the later steps are decided again, all in revisions. A session not held
counts no funnel step for it. The expectations are worked out by hand from the rule; the engine and verify's two
implementations must each give them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate.config import StateConfig
from pulse.aggregate.model import FUNNEL
from pulse.aggregate.partition import new_partition, route
from pulse.verify.diff import diff_documents
from pulse.verify.reference import recompute
from pulse.verify.revisions import SUFFIX, summed
from tests.aggregate.test_partition_vs_reference import flush, restored

SEC, MIN = 1_000, 60_000
BASE = 1_795_000_000_000 // (60 * MIN) * (60 * MIN)
SIZES = (10 * SEC, MIN, 60 * MIN)  # an hour: users sketched, so a revision that moved steps alone has no sketch
CFG = StateConfig(window_sizes=SIZES)


def _event(n: int, session: str, etype: str, at: int) -> tuple[int, int, bytes, int]:
    event = {"event_id": f"e{n}", "event_type": etype, "ts": BASE + at, "user_id": f"u-{session}",
             "session_id": session, "item_id": "i1"}
    if etype == "purchase":
        event["amount"] = 12.5
    value = orjson.dumps(event)
    return (0, n, value, BASE + at + 1)


def _rows(steps: list[tuple[str, str, int]]) -> list[tuple[int, int, bytes, int]]:
    return [_event(n, session, etype, at) for n, (session, etype, at) in enumerate(steps)]


# the watermark (the latest time less the 30 s grace) passes a's view and all of e's events; a's add_to_cart is
# still open (not a step on time: the click is missing) when both clicks come late
HELD = [("a", "view", 0), ("e", "view", 0), ("e", "add_to_cart", 60 * SEC), ("b", "view", 2 * MIN),
        ("a", "add_to_cart", 3 * MIN), ("a", "click", 30 * SEC), ("e", "click", 30 * SEC), ("a", "purchase", 4 * MIN)]
# session c's last on-time event is more than the session timeout (30 min) before the watermark: not held
GONE = [("c", "view", MIN), ("d", "view", 45 * MIN), ("c", "click", 2 * MIN)]


def _engine(rows: list[tuple[int, int, bytes, int]], flush_every: int, restart_at: int | None = None) -> dict:
    st_, out, log = new_partition(0, CFG), {}, []
    for i, (_, offset, value, ts) in enumerate(rows):
        if i == restart_at:
            flush(st_, out, log=log)
            st_ = restored(0, CFG, log, rows[:i])
        route(st_, offset, None, value, ts)
        if (i + 1) % flush_every == 0:
            flush(st_, out, log=log)
    flush(st_, out, log=log)
    return out


def _funnel(docs: dict[str, dict[str, Any]], doc_id: str) -> dict[str, int]:
    d = docs.get(doc_id)
    return {k: n for k, n in (d["funnel"] if d else {}).items() if n}


def _window(at: int, size: int = 10 * SEC) -> str:
    start = (BASE + at) // size * size
    return f"window:{'10s' if size == 10 * SEC else '1m'}:{start}:p0"


@pytest.mark.parametrize("flush_every", [1, 2, 5])
def test_a_correction_of_a_held_session_counts_its_step_and_moves_the_later_ones(flush_every: int) -> None:
    docs = summed(_engine(_rows(HELD), flush_every).items())
    # own windows: what the on-time events decide (the views only: every later step misses the click)
    assert _funnel(docs, _window(0)) == {"view": 2}
    assert _funnel(docs, _window(3 * MIN)) == _funnel(docs, _window(4 * MIN)) == {}
    # revisions: both clicks; a's open add_to_cart and purchase decided again after its click; e's add_to_cart
    # was settled before its click came, and stays as it was
    assert _funnel(docs, _window(30 * SEC) + SUFFIX) == {"click": 2}
    assert _funnel(docs, _window(3 * MIN) + SUFFIX) == {"add_to_cart": 1}
    assert _funnel(docs, _window(4 * MIN) + SUFFIX) == {"purchase": 1}
    assert _window(60 * SEC) + SUFFIX not in docs
    assert _funnel(docs, _window(0, MIN) + SUFFIX) == {"click": 2}


def test_a_correction_of_a_session_no_longer_held_counts_no_step() -> None:
    docs = summed(_engine(_rows(GONE), 1).items())
    assert docs[_window(2 * MIN) + SUFFIX]["events"] == 1
    assert _funnel(docs, _window(2 * MIN) + SUFFIX) == {}


# the click comes late in the first hour and moves x's open add_to_cart on in the second: that hour's revision
# holds a funnel step and no event, user or sketch
CROSSING = [("x", "view", 50 * MIN), ("y", "view", 58 * MIN), ("x", "add_to_cart", 65 * MIN),
            ("x", "click", 55 * MIN)]


@pytest.mark.parametrize("native", [False, True])
def test_verify_follows_the_rule(native: bool) -> None:
    for rows in (_rows(HELD), _rows(GONE), _rows(CROSSING)):
        expected = recompute(rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, native=native)
        diff = diff_documents(expected, _engine(rows, 2))
        assert diff.ok, diff.summary()


def test_the_funnel_tracks_survive_a_restart() -> None:
    rows = _rows(HELD)
    assert summed(_engine(rows, 1, restart_at=6).items()) == summed(_engine(rows, 1).items())


_SESSION_STEPS = st.lists(st.tuples(st.sampled_from("pq"), st.sampled_from([*FUNNEL, "search"]),
                                    st.integers(0, 50 * MIN)), min_size=4, max_size=40)


@settings(max_examples=60, deadline=None)
@given(steps=_SESSION_STEPS, flush_every=st.integers(1, 6), restart=st.booleans())
def test_any_arrival_order_of_two_sessions_equals_both_references(steps: list[tuple[str, str, int]],
                                                                   flush_every: int, restart: bool) -> None:
    """Random steps of two sessions over two hours in random arrival order (many late: corrections of held and
    of gone sessions), flushed anywhere, restarted from the changelog or not."""
    rows = _rows(steps)
    out = _engine(rows, flush_every, restart_at=len(rows) // 2 if restart else None)
    for native in (False, True):
        expected = recompute(rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, native=native)
        diff = diff_documents(expected, out)
        assert diff.ok, diff.summary()
