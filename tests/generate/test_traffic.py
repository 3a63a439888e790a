"""The generator's traffic model and chaos layer, checked without Kafka (pure logic)."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import islice

import orjson
import pytest

from pulse.events.schema import Event
from pulse.events.validate import Rejection, validate
from pulse.generate.chaos import INVALID_KINDS, Chaos, ChaosConfig, Tag
from pulse.generate.traffic import Traffic, TrafficConfig

START = 1_795_000_000_000


def records(n: int, chaos: ChaosConfig | None = None, **cfg: object) -> list:
    traffic = Traffic(TrafficConfig(start_ms=START, **cfg))  # type: ignore[arg-type]
    return list(islice(Chaos(traffic, chaos or ChaosConfig()), n))


def test_same_seed_same_records_other_seed_other_records() -> None:
    assert records(2000, seed=5) == records(2000, seed=5)
    assert records(2000, seed=5) != records(2000, seed=6)


def test_clean_traffic_is_all_valid_and_ordered_in_time() -> None:
    recs = records(20_000)
    events = [validate(v, send) for _, _, v, send in recs]
    assert all(isinstance(e, Event) for e in events)
    ts = [e.ts for e in events]  # type: ignore[union-attr]
    assert ts == sorted(ts)
    assert {e.event_type for e in events} == {"view", "click", "add_to_cart", "purchase"}  # type: ignore[union-attr]
    for (_, key, _, _), e in zip(recs, events, strict=True):
        assert key == e.user_id.encode()  # type: ignore[union-attr]


def test_sessions_walk_the_funnel_in_order() -> None:
    previous: dict[str, tuple[str, str]] = {}
    need = {"click": "view", "add_to_cart": "click", "purchase": "add_to_cart"}
    checked = 0
    for _, _, value, _ in records(50_000):
        e = orjson.loads(value)
        if e["event_type"] in need:
            assert previous.get(e["session_id"]) == (need[e["event_type"]], e["item_id"]), e
            checked += 1
        previous[e["session_id"]] = (e["event_type"], e["item_id"])
    assert checked > 5_000


def test_conversion_rates_and_errors_follow_the_configuration() -> None:
    counts = Counter(orjson.loads(v)["event_type"] for _, _, v, _ in records(100_000, click_rate=0.5,
                                                                              cart_rate=0.4, purchase_rate=0.5))
    # a step only follows a successful previous step (~2% errors); allow sampling noise
    assert counts["click"] / counts["view"] == pytest.approx(0.5 * 0.98, abs=0.02)
    assert counts["add_to_cart"] / counts["click"] == pytest.approx(0.4 * 0.98, abs=0.02)
    statuses = Counter(orjson.loads(v)["status"] for _, _, v, _ in records(50_000, error_rate=0.1))
    assert statuses["error"] + statuses["timeout"] == pytest.approx(0.1 * 50_000, rel=0.1)


def test_item_popularity_is_zipf_like_over_many_items() -> None:
    items = Counter(orjson.loads(v)["item_id"] for _, _, v, _ in records(100_000, items=10_000))
    ranked = [n for _, n in items.most_common()]
    assert len(items) > 3000  # the long tail is visited
    assert ranked[0] > 20 * ranked[len(ranked) // 2]  # the head dominates


def test_rate_shapes_change_event_spacing() -> None:
    def span(shape: str) -> list[int]:
        ts = [orjson.loads(v)["ts"] for _, _, v, _ in records(6000, rate=100.0, shape=shape, shape_period_s=20.0)]
        per_second = Counter((t - START) // 1000 for t in ts)
        return [per_second[s] for s in range(40)]

    steady, bursts = span("steady"), span("bursts")
    assert max(steady) - min(steady) <= 2
    assert max(bursts) > 3 * min(bursts)


def test_chaos_fractions_are_met_within_one_point_and_every_kind_appears() -> None:
    chaos = ChaosConfig(late_fraction=0.05, disorder_fraction=0.04, duplicate_fraction=0.03, invalid_fraction=0.07,
                        too_late_fraction=0.02)
    recs = records(100_000, chaos)
    tags = Counter(tag for tag, *_ in recs)
    n = len(recs)
    assert tags[Tag.LATE] / n == pytest.approx(0.05, abs=0.01)
    assert tags[Tag.TOO_LATE] / n == pytest.approx(0.02, abs=0.01)
    assert tags[Tag.DISORDERED] / n == pytest.approx(0.04, abs=0.01)
    assert tags[Tag.DUPLICATE] / n == pytest.approx(0.03, abs=0.01)
    assert sum(tags[k] for k in INVALID_KINDS) / n == pytest.approx(0.07, abs=0.01)
    assert all(tags[k] > 0 for k in INVALID_KINDS)


def test_chaos_records_are_what_their_tags_say() -> None:
    """Independent checks of each tag: the validator rejects invalid kinds, late ones are behind the clock."""
    grace = 30_000
    horizon, late_max = 3_600_000, 600_000
    recs = records(40_000, ChaosConfig(0.05, 0.05, 0.05, 0.1, grace_ms=grace, too_late_fraction=0.05,
                                       late_max_ms=late_max, horizon_ms=horizon))
    seen: dict[str, bytes] = {}
    max_ts = 0
    by_tag: dict[Tag, int] = defaultdict(int)
    for tag, _key, value, send in recs:
        result = validate(value, send)
        if tag.invalid:
            assert isinstance(result, Rejection), (tag, value[:80])
            continue
        assert isinstance(result, Event)
        if tag is Tag.DUPLICATE:
            assert seen[result.event_id] == value
        elif tag is Tag.LATE:
            assert max_ts - grace - late_max <= result.ts < max_ts - grace
        elif tag is Tag.TOO_LATE:
            assert result.ts < max_ts - grace - horizon
        elif tag is Tag.DISORDERED:
            assert max_ts - grace <= result.ts < max_ts
        else:
            assert result.event_id not in seen
        seen[result.event_id] = value
        max_ts = max(max_ts, result.ts)
        by_tag[tag] += 1
    assert min(by_tag.values()) > 1000
