"""A range's recompute, walked from its lead-in only, equals the whole input's for every window it covers, on every
field it claims to check; what it cannot know is marked, and the marks are needed."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.verify.order import UNCHECKED
from pulse.verify.ranges import rebuild_from
from pulse.verify.reference import recompute
from pulse.verify.tally import PartitionTally
from tests.aggregate.test_partition_vs_reference import SIZES
from tests.aggregate.test_repartition import CFG, PARTITIONS, _rows, in_order
from tests.realworld.plain import event

SESSION_MS = 20_000


def _window_kinds(docs: dict[str, dict[str, Any]], start: int) -> dict[str, dict[str, Any]]:
    return {i: d for i, d in docs.items() if d["kind"].startswith("window") and d["start"] >= start}


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 10_000), at=st.sampled_from([0.7, 0.8]))
def test_a_range_recomputes_the_windows_it_covers_as_the_whole_input_does(seed: int, at: float) -> None:
    rows = _rows(seed, 0.02, 0.02, 0.02, n=4_500)
    c = in_order(rows)
    whole = recompute(rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, SESSION_MS, decisions=c.decisions,
                      forwarded=c.forwarded(), partitions=PARTITIONS)
    first, last = min(r[3] for r in rows), max(r[3] for r in rows)
    range_from = (first + int(at * (last - first))) // 10_000 * 10_000
    # the generator's records carry event times at or before their record times: no future to allow for
    lead = rebuild_from(range_from, CFG.grace_ms, SESSION_MS, max_future_ms=0)
    starts = {p: min((o for q, o, _, ts in rows if q == p and ts >= lead.start), default=1 << 40)
              for p in range(PARTITIONS)}
    assert all(ts < lead.start for p, o, _, ts in rows if o < starts[p])  # record times grow with offsets
    part = recompute(rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, SESSION_MS, decisions=c.decisions,
                     forwarded=c.forwarded(), partitions=PARTITIONS, starts=starts, unseen_before=lead.unseen_before,
                     unread_before=lead.start)
    assert part.problems == []
    mine, theirs = _window_kinds(part.docs, range_from), _window_kinds(whole.docs, range_from)
    assert mine.keys() == theirs.keys() and mine
    for doc_id, doc in mine.items():
        unknown = doc.get(UNCHECKED, set())
        want = {k: v for k, v in theirs[doc_id].items() if k not in unknown}
        assert {k: v for k, v in doc.items() if k != UNCHECKED and k not in unknown} == want, doc_id
    # some windows' funnel could not be known (sessions running across the lead-in)
    assert any("funnel" in d.get(UNCHECKED, ()) for d in mine.values())


def _event(n: int, ts: int, **fields: Any) -> Event:
    found = validate(orjson.dumps(event(n, ts, **fields)), ts)
    assert isinstance(found, Event)
    return found


def test_a_session_running_into_a_range_leaves_its_windows_funnel_unknown_until_a_quiet_gap() -> None:
    """Its view came before the range's walk began: the click after it is a funnel step for the whole input, and
    not for the range, which cannot know. The range marks that window's funnel unchecked, and stops marking
    once the session has been quiet for longer than the timeout (its run starts over either way)."""
    base = 1_795_000_000_000
    view = _event(1, base + 1_000, session_id="s", event_type="view")
    later = [_event(2, base + 12_000, session_id="s", event_type="click"),
             _event(3, base + 12_000 + SESSION_MS + 5_000, session_id="s", event_type="view"),
             _event(4, base + 12_000 + SESSION_MS + 6_000, session_id="s", event_type="click")]
    whole, part = PartitionTally(0, [10_000], SESSION_MS), PartitionTally(0, [10_000], SESSION_MS, base + 5_000)
    whole.add(view)
    for e in later:
        whole.add(e)
        part.add(e)
    everything = dict(whole.finish()[0])
    ranged = dict(part.finish()[0])
    first, second = f"window:10s:{base + 10_000}:p0", f"window:10s:{base + 30_000}:p0"
    assert everything[first]["funnel"]["click"] == 1 and ranged[first]["funnel"]["click"] == 0
    assert ranged[first][UNCHECKED] == {"funnel"}
    assert UNCHECKED not in ranged[second] and ranged[second]["funnel"] == everything[second]["funnel"]
