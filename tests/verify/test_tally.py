"""The reference's tally: the documents depend on which events were counted, never on the order they arrived in
within the watermark, nor on when finished windows were handed out."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.generate.chaos import ChaosConfig
from pulse.verify.tally import AMOUNT, PRICE, PartitionTally
from tests.aggregate.test_partition_vs_reference import SIZES, make_rows


def _events(n: int, seed: int) -> list[Event]:
    out = []
    for _, _, value, ts in make_rows(n, seed, ChaosConfig(disorder_fraction=0.2), partitions=1):
        e = validate(value, ts)
        if isinstance(e, Event):
            out.append(e)
    return out


def _tally(events: list[Event], advance_every: int, lag_ms: int) -> dict[str, Any]:
    """Count ``events`` in the given order, handing out finished windows every few events at a watermark
    ``lag_ms`` behind the latest event time seen, but never past an event still to come."""
    t = PartitionTally(0, list(SIZES), 30 * 60_000)
    docs: dict[str, Any] = {}
    latest = None
    for n, e in enumerate(events):
        t.add(e)
        latest = e.ts if latest is None else max(latest, e.ts)
        if n % advance_every == 0:
            rest = [x.ts for x in events[n + 1:]]
            watermark = min([latest - lag_ms, *rest])
            if watermark > t.watermark:
                docs.update(t.advance(watermark, watermark))
    windows, entities = t.finish()
    docs.update(windows)
    docs.update(entities)
    for d in docs.values():  # a sketch's values are a multiset: the diff compares their quantiles
        for name in (AMOUNT, PRICE):
            if name in d:
                d[name] = sorted(d[name])
    return docs


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), shuffle=st.integers(0, 1000), advance_every=st.integers(1, 200),
       lag_s=st.integers(0, 120))
def test_documents_do_not_depend_on_arrival_order_or_hand_out_points(seed: int, shuffle: int, advance_every: int,
                                                                   lag_s: int) -> None:
    events = _events(800, seed)
    in_time = sorted(events, key=lambda e: e.ts)
    arrived = list(events)
    random.Random(shuffle).shuffle(arrived)
    plain = _tally(in_time, 10**9, 0)
    assert plain == _tally(arrived, advance_every, lag_s * 1000)
    assert plain == _tally(in_time, advance_every, lag_s * 1000)
    # the funnel counted something: the property is not vacuous
    assert sum(sum(d["funnel"].values()) for d in plain.values() if d["kind"] == "window") > 0
