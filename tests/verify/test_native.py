"""The native walk (`pulse.verify.native`, what `pulse verify` streams with) against the Python reference walk: two
implementations of the same rules, held equal on random inputs, arrival orders, ranges and broken repartition
topics. Neither is the engine."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.verify.order import Forward, Marker
from pulse.verify.ranges import rebuild_from
from pulse.verify.reference import Expected, _filled, recompute
from pulse.verify.walk import Rules, Walked, check_flows, sent_markers
from tests.aggregate.test_partition_vs_reference import SIZES
from tests.aggregate.test_repartition import CFG, PARTITIONS, _rows, in_order, played

SESSION_MS = 120_000


def _both(rows: list[tuple[int, int, bytes, int]], **kw: Any) -> tuple[Expected, Expected]:
    args = (rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, kw.pop("session_ms", SESSION_MS))
    return recompute(*args, **kw), recompute(*args, native=True, **kw)


def _same(python: Expected, native: Expected) -> None:
    assert python.problems == native.problems
    assert (python.produced, python.accepted, python.dead_lettered, python.late, python.duplicates,
            python.forwarded) == (native.produced, native.accepted, native.dead_lettered, native.late,
                                  native.duplicates, native.forwarded)
    assert python.docs.keys() == native.docs.keys()
    differ = [i for i in python.docs if python.docs[i] != native.docs[i]]
    assert not differ, [(i, python.docs[i], native.docs[i]) for i in differ[:2]]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), late=st.floats(0, 0.05), dup=st.floats(0, 0.1), bad=st.floats(0, 0.05),
       ops=st.lists(st.tuples(st.sampled_from("rrrrfftx"), st.integers(0, PARTITIONS - 1), st.integers(1, 800)),
                    min_size=5, max_size=40))
def test_native_equals_the_reference_in_any_arrival_order(seed: int, late: float, dup: float, bad: float,
                                                         ops: list[tuple[str, int, int]]) -> None:
    rows = _rows(seed, late, dup, bad)
    c = played(rows, ops)
    python, native = _both(rows, decisions=c.decisions, forwarded=c.forwarded(), partitions=PARTITIONS)
    assert python.forwarded > len(rows) // 2  # most records go to another owner: the native partitioner is Kafka's
    _same(python, native)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), at=st.sampled_from([0.5, 0.8]))
def test_native_equals_the_reference_over_a_range(seed: int, at: float) -> None:
    rows = _rows(seed, 0.02, 0.02, 0.02, n=4_000)
    c = in_order(rows)
    first, last = min(r[3] for r in rows), max(r[3] for r in rows)
    lead = rebuild_from((first + int(at * (last - first))) // 10_000 * 10_000, CFG.grace_ms, SESSION_MS, 0)
    starts = {p: min((o for q, o, _, ts in rows if q == p and ts >= lead.start), default=1 << 40)
              for p in range(PARTITIONS)}
    python, native = _both(rows, decisions=c.decisions, forwarded=c.forwarded(), partitions=PARTITIONS,
                           starts=starts, unseen_before=lead.unseen_before, unread_before=lead.start)
    _same(python, native)


def test_native_names_what_the_reference_names_in_a_broken_repartition_topic() -> None:
    rows = _rows(5, 0.0, 0.0, 0.0, n=2_000)
    c = in_order(rows)
    clean = c.forwarded()
    owner = next(q for q, items in clean.items() if any(isinstance(i, Forward) for _, i in items))
    at = next(n for n, (_, i) in enumerate(clean[owner]) if isinstance(i, Forward))
    lost = copy.deepcopy(clean)
    del lost[owner][at]
    ahead = copy.deepcopy(clean)
    n, (offset, mark) = next((n, x) for n, x in enumerate(ahead[owner]) if isinstance(x[1], Marker) and x[1].value > 0)
    ahead[owner][n] = (offset, replace(mark, value=mark.value + 3_600_000))
    for broken in (lost, ahead):
        python, native = _both(rows, decisions=c.decisions, forwarded=broken, partitions=PARTITIONS)
        assert python.problems
        _same(python, native)


def test_native_takes_what_only_the_contracts_slow_path_accepts() -> None:
    """Non-ASCII country codes and a repeated field leave the fast path (escapes and spacing take its slower
    parser): the contract's own validator decides, and what it accepts counts alike."""
    rng = random.Random(3)
    rows = []
    for n in range(400):
        ts = 1_700_000_000_000 + n * 250
        e = {"event_id": f"é-{n % 390}", "event_type": rng.choice(["view", "click", "purchase"]), "ts": ts,
             "user_id": f"u\\u00e9{n % 17}", "session_id": f"s{n % 9}", "item_id": f"i{n % 5}",
             "category": "c\"q", "amount": 1.005 * (n % 7), "price": 2.5, "country": "ÉS" if n % 3 else "DE",
             "device": "ios"}
        raw = orjson.dumps(e) if n % 2 else orjson.dumps(e, option=orjson.OPT_INDENT_2)
        if n % 5 == 0:
            raw = raw[:-1] + b',"device":"web"}'  # the last of a repeated field counts
        rows.append((0, n, raw, ts + 5))
    rows.append((0, 400, b"{not json", 1_700_000_200_000))
    python, native = _both(rows)
    assert python.accepted > 300 and python.dead_lettered == 1
    values = {d.get("value") for d in native.docs.values()}
    assert {"ÉS", "web", "ios"} <= values
    _same(python, native)


def _walked_to(rows: list[tuple[int, int, bytes, int]], c: Any, forwarded: dict, until: int) -> list[Walked]:
    """Each partition's native walk as `pulse verify --to` runs it: stopped once its windows up to ``until`` are
    final, each at its own place in its input and in the repartition topic."""
    from pulse.verify.native import NativeWalk, RowRecord

    mine: dict[int, list[tuple[int, bytes, int]]] = {}
    for p, offset, value, ts in rows:
        mine.setdefault(p, []).append((offset, value, ts))
    at = {(p, o): (v, ts) for p, rs in mine.items() for o, v, ts in rs}
    taken = {q: [(o, _filled(item, at)) for o, item in items] for q, items in forwarded.items()}
    markers = sent_markers(item for items in taken.values() for item in items)
    rules = Rules(CFG.grace_ms, CFG.correct_within_ms, 300_000, PARTITIONS, {}, None)
    walks = []
    for p in range(PARTITIONS):
        walk = NativeWalk(p, rules, list(SIZES), SESSION_MS, None, lambda _w, _d: None, c.decisions.get(p, []),
                          markers.get(p, []), None)
        walk.feed([RowRecord(*row) for row in sorted(mine.get(p, []))], taken.get(p, []), until)
        walks.append(walk.out)
    return walks


def test_records_between_partitions_are_compared_up_to_a_time_where_both_sides_saw_them_whole() -> None:
    rows = _rows(11, 0.02, 0.02, 0.0, n=4_000)
    c = in_order(rows)
    first, last = min(r[3] for r in rows), max(r[3] for r in rows)
    until = (first + (last - first) // 2) // 10_000 * 10_000
    clean = c.forwarded()
    walks = _walked_to(rows, c, clean, until)
    early = sum(f.early for w in walks for f in w.sent.values())
    assert early > 500 and all(len(w.early_whole) == PARTITIONS for w in walks)  # every pair compared
    assert check_flows(walks, early=True) == []
    # whole flows differ: each walk stopped at its own place
    assert check_flows(walks, corrections=False) != []

    # an early record lost on the way is named; one from past the end is not compared
    event_ts = {(p, o): orjson.loads(v)["ts"] for p, o, v, _ in rows}

    def lose(early: bool) -> dict:
        lost = copy.deepcopy(clean)
        for q, items in lost.items():
            for n, (_, item) in enumerate(items):
                if not isinstance(item, Forward) or item.correction:
                    continue
                ts = event_ts[(item.partition, item.offset)]
                if (ts < until - 5_000) if early else (ts > until + 5_000):
                    del lost[q][n]
                    return lost
        raise AssertionError("no such record")

    assert any("a record lost or sent twice" in x for x in check_flows(_walked_to(rows, c, lose(True), until),
                                                                     early=True))
    assert check_flows(_walked_to(rows, c, lose(False), until), early=True) == []
