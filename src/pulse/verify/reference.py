"""A deliberately simple recompute of every Pulse aggregate from raw input records, in one pass.

It shares no aggregation code with the engine (only the event contract, ``validate``): plain dicts, one
event at a time, per partition in offset order, with the documented rules:
- watermark = max event time seen (each capped at its record's Kafka timestamp) − grace, or a floor the
  aggregator recorded for a quiet partition (from that input offset on) if higher; an event below it on arrival
  is late;
- an ``event_id`` seen (not as a duplicate) with event time ≥ watermark − horizon is a duplicate;
- funnel steps count once per session, in order, for ``ok`` events; a session idle past the timeout restarts;
- money in integer cents.
Its output has the engine's document ids and fields, so the two can be diffed exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pulse.events.schema import Event
from pulse.events.validate import validate

STEPS = ["view", "click", "add_to_cart", "purchase"]
UNITS = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]


def size_label(ms: int) -> str:
    for unit, n in UNITS:
        if ms % n == 0:
            return f"{ms // n}{unit}"
    return f"{ms}ms"


@dataclass
class Expected:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    produced: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    late: int = 0
    duplicates: int = 0


Floors = dict[int, list[tuple[int, int]]]
"""Per partition, the recorded wall-clock decisions as (from input offset, watermark floor)."""


def recompute(records: Iterable[tuple[int, int, bytes | None, int]], window_sizes: Iterable[int], grace_ms: int,
              horizon_ms: int, session_timeout_ms: int = 30 * 60_000, floors: Floors | None = None) -> Expected:
    """``records``: (partition, offset, value, record timestamp ms) in any order."""
    by_partition: dict[int, list[tuple[int, bytes | None, int]]] = defaultdict(list)
    for partition, offset, value, record_ts in records:
        by_partition[partition].append((offset, value, record_ts))
    out = Expected()
    for partition, rows in by_partition.items():
        rows.sort()
        accepted = _classify(rows, grace_ms, horizon_ms, sorted((floors or {}).get(partition, [])), out)
        _aggregate(partition, accepted, list(window_sizes), session_timeout_ms, out)
    return out


def _classify(rows: list[tuple[int, bytes | None, int]], grace_ms: int, horizon_ms: int,
              floors: list[tuple[int, int]], out: Expected) -> list[tuple[Event, int]]:
    """Returns the accepted events with the watermark in force when each arrived."""
    max_ts = None
    floor = None
    first_seen: dict[str, int] = {}
    accepted = []

    def mark() -> int | None:
        by_events = None if max_ts is None else max_ts - grace_ms
        if floor is None or (by_events is not None and by_events > floor):
            return by_events
        return floor

    for offset, value, record_ts in rows:
        while floors and floors[0][0] <= offset:
            _, at_least = floors.pop(0)
            floor = at_least if floor is None else max(floor, at_least)
        out.produced += 1
        event = validate(value or b"", record_ts)
        if not isinstance(event, Event):
            out.dead_lettered += 1
            continue
        watermark = mark()
        if watermark is not None and event.ts < watermark:
            out.late += 1
            if event.event_id not in first_seen:
                first_seen[event.event_id] = event.ts
            continue
        clock = min(event.ts, record_ts)  # the event clock never runs ahead of the record's timestamp
        if max_ts is None or clock > max_ts:
            max_ts = clock
        watermark = mark()
        earlier = first_seen.get(event.event_id)
        if earlier is not None and earlier >= watermark - horizon_ms:
            out.duplicates += 1
            continue
        first_seen[event.event_id] = event.ts
        out.accepted += 1
        accepted.append((event, watermark))
    return accepted


def _aggregate(p: int, events: list[tuple[Event, int]], sizes: list[int], session_timeout_ms: int,
               out: Expected) -> None:
    docs = out.docs
    sessions: dict[str, list[int]] = {}
    item_category: dict[str, str | None] = {}  # an item's category is the first one seen in the partition
    window_users: dict[str, set[str]] = defaultdict(set)
    for e, watermark in events:
        ok = e.status == "ok"
        paid = round(e.amount * 100) if e.event_type == "purchase" and ok and e.amount is not None else None
        step_counted = None
        if ok:
            s = sessions.get(e.session_id)
            if s is None or s[1] < watermark - session_timeout_ms:
                s = sessions[e.session_id] = [0, e.ts]
            s[1] = max(s[1], e.ts)
            if e.event_type in STEPS and STEPS.index(e.event_type) == s[0]:
                step_counted = e.event_type
                s[0] += 1
        for size in sizes:
            start = e.ts // size * size
            name = size_label(size)
            wid = f"window:{name}:{start}:p{p}"
            w = docs.setdefault(wid, {"kind": "window", "window": name, "start": start, "end": start + size,
                                      "partition": p, "events": 0, "counts": {}, "status": {}, "errors": 0,
                                      "purchases": 0, "revenue_cents": 0, "min_cents": None, "max_cents": None,
                                      "unique_users": 0, "funnel": dict.fromkeys(STEPS, 0)})
            w["events"] += 1
            w["counts"][e.event_type] = w["counts"].get(e.event_type, 0) + 1
            w["status"][e.status] = w["status"].get(e.status, 0) + 1
            if not ok:
                w["errors"] += 1
            if paid is not None:
                w["purchases"] += 1
                w["revenue_cents"] += paid
                w["min_cents"] = paid if w["min_cents"] is None else min(w["min_cents"], paid)
                w["max_cents"] = paid if w["max_cents"] is None else max(w["max_cents"], paid)
            if step_counted:
                w["funnel"][step_counted] += 1
            window_users[wid].add(e.user_id)
            w["unique_users"] = len(window_users[wid])
            if e.item_id is not None:
                category = item_category.setdefault(e.item_id, e.category)
                d = docs.setdefault(f"window_item:{name}:{start}:{e.item_id}:p{p}", {
                    "kind": "window_item", "window": name, "start": start, "end": start + size, "partition": p,
                    "item_id": e.item_id, "category": category, "counts": {}, "revenue_cents": 0, "purchases": 0})
                _count(d, e.event_type, paid)
            if e.category is not None:
                d = docs.setdefault(f"window_category:{name}:{start}:{e.category}:p{p}", {
                    "kind": "window_category", "window": name, "start": start, "end": start + size, "partition": p,
                    "category": e.category, "counts": {}, "revenue_cents": 0, "purchases": 0})
                _count(d, e.event_type, paid)
        u = docs.setdefault(f"user:{e.user_id}", {"kind": "user", "user_id": e.user_id, "partition": p,
                                                  "first_seen": e.ts, "last_seen": e.ts, "counts": {},
                                                  "spent_cents": 0, "purchases": 0, "last_item": None})
        u["first_seen"] = min(u["first_seen"], e.ts)
        if e.ts >= u["last_seen"]:
            u["last_seen"] = e.ts
            if e.item_id is not None:
                u["last_item"] = e.item_id
        u["counts"][e.event_type] = u["counts"].get(e.event_type, 0) + 1
        if paid is not None:
            u["spent_cents"] += paid
            u["purchases"] += 1
        if e.item_id is not None:
            d = docs.setdefault(f"item:{e.item_id}:p{p}", {"kind": "item", "item_id": e.item_id, "category": e.category,
                                                           "partition": p, "counts": {}, "revenue_cents": 0,
                                                           "purchases": 0})
            _count(d, e.event_type, paid)


def _count(doc: dict[str, Any], event_type: str, paid: int | None) -> None:
    doc["counts"][event_type] = doc["counts"].get(event_type, 0) + 1
    if paid is not None:
        doc["revenue_cents"] += paid
        doc["purchases"] += 1
