"""A deliberately simple recompute of every Pulse aggregate from raw input records, in one pass.

It shares no aggregation code with the engine (only the event contract, ``validate``, the generator's
partitioner, and the model's names: funnel steps and dimensions): plain dicts, one event at a time, per
partition, with the documented rules:
- which records count, and at which partition, follows :mod:`pulse.verify.order` (event time judged where each
  record is read, watermarks carried to the partition that owns the user, duplicates);
- funnel steps count in event-time order per session (by time, then step): once per run, only right after the
  previous step, for ``ok`` events; a gap longer than the session timeout starts a new run;
- a user's last item is the item of their latest event that has one (the greater id on a tie);
- money in integer cents.
Its output has the engine's document ids and fields, so the two can be diffed exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pulse.aggregate.model import (
    DIMENSIONS,
    EXACT_USERS_UP_TO_MS,
    FUNNEL,
    ITEMS_FROM_MS,
    SKETCH_USERS_FROM_MS,
    USERS_SKETCH,
    sketch_field,
)
from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.verify.order import (
    Counts,
    Decisions,
    Floor,
    Forward,
    Forwarded,
    Marker,
    Row,
    Stall,
    Take,
    check_forwarding,
    judge_sources,
    owned_events,
)

__all__ = ["Decisions", "Expected", "Floor", "Forward", "Forwarded", "Marker", "Stall", "Take", "funnel_steps",
           "recompute"]

STEPS = list(FUNNEL)
HOUR_MS = 3_600_000
USER_HOURS = 24  # the hours a user document keeps, up to the user's latest event
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
    forwarded: int = 0  # valid records counted by the partition that owns their user, not where they were read
    problems: list[str] = field(default_factory=list)  # the repartition topic disagrees with the input


def recompute(records: Iterable[tuple[int, int, bytes | None, int]], window_sizes: Iterable[int], grace_ms: int,
              horizon_ms: int, session_timeout_ms: int = 30 * 60_000, decisions: Decisions | None = None,
              forwarded: Forwarded | None = None, partitions: int = 0, forward_wait_ms: int = 300_000) -> Expected:
    """``records``: (partition, offset, value, record timestamp ms) in any order. ``partitions``: the input topic's
    partition count, to tell records whose user another partition owns (0: every record counts where read)."""
    rows: dict[int, list[Row]] = defaultdict(list)
    out = Expected()
    for partition, offset, value, record_ts in records:
        out.produced += 1
        rows[partition].append((offset, validate(value or b"", record_ts), record_ts))
    for p in rows:
        rows[p].sort(key=lambda r: r[0])
    decisions, forwarded = decisions or {}, forwarded or {}
    counts = Counts()
    away, timelines = judge_sources(rows, decisions, grace_ms, partitions, counts)
    if partitions:
        check_forwarding(away, forwarded, counts)
    for p in sorted(rows.keys() | forwarded.keys()):
        events = owned_events(p, rows.get(p, []), decisions.get(p, []), forwarded.get(p, []), away, timelines,
                              grace_ms, horizon_ms, forward_wait_ms, partitions, counts)
        _aggregate(p, list(events), list(window_sizes), session_timeout_ms, out)
    out.accepted, out.dead_lettered, out.late, out.duplicates = (counts.accepted, counts.dead_lettered, counts.late,
                                                                  counts.duplicates)
    out.forwarded, out.problems = counts.forwarded, counts.problems
    return out


def funnel_steps(events: list[Event], timeout_ms: int) -> dict[int, str]:
    """The funnel step each event counts for (by its index in ``events``): per session, its ``ok`` events by
    (time, step), a step once per run and only right after the previous one; a gap past the timeout starts over."""
    sessions: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for i, e in enumerate(events):
        if e.status == "ok":
            kind = STEPS.index(e.event_type) if e.event_type in STEPS else -1
            sessions[e.session_id].append((e.ts, kind, i))
    counted = {}
    for run in sessions.values():
        steps, last = 0, None
        for ts, kind, i in sorted(run, key=lambda r: (r[0], r[1])):
            if last is not None and ts - last > timeout_ms:
                steps = 0
            last = ts
            if kind == steps:
                counted[i] = STEPS[kind]
                steps += 1
    return counted


def _aggregate(p: int, events: list[Event], sizes: list[int], session_timeout_ms: int, out: Expected) -> None:
    docs = out.docs
    steps = funnel_steps(events, session_timeout_ms)
    last_item: dict[str, tuple[int, str]] = {}
    item_category: dict[str, str | None] = {}  # an item's category is the first one seen in the partition
    window_users: dict[str, set[str]] = defaultdict(set)
    items_from = min(ITEMS_FROM_MS, max(sizes))  # shorter windows are not broken down by item
    user_hours: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for n, e in enumerate(events):
        ok = e.status == "ok"
        paid = round(e.amount * 100) if e.event_type == "purchase" and ok and e.amount is not None else None
        step_counted = steps.get(n)
        for size in sizes:
            start = e.ts // size * size
            name = size_label(size)
            wid = f"window:{name}:{start}:p{p}"
            w = docs.setdefault(wid, {"kind": "window", "window": name, "start": start, "end": start + size,
                                      "partition": p, "events": 0, "counts": {}, "status": {}, "errors": 0,
                                      "purchases": 0, "revenue_cents": 0, "min_cents": None, "max_cents": None,
                                      "unique_users": 0, "funnel": dict.fromkeys(STEPS, 0),
                                      # the exact values whose quantiles the window's sketches estimate
                                      sketch_field("amount"): [], sketch_field("price"): []})
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
                w[sketch_field("amount")].append(paid)
                if e.price is not None:
                    w[sketch_field("price")].append(round(e.price * 100))
            if step_counted:
                w["funnel"][step_counted] += 1
            users = window_users[wid]
            users.add(e.user_id)
            w["unique_users"] = len(users) if size <= EXACT_USERS_UP_TO_MS else None
            if size >= SKETCH_USERS_FROM_MS:  # the exact set whose size the window's HyperLogLog estimates
                docs.setdefault(f"window_users:{name}:{start}:p{p}", {
                    "kind": "window_users", "window": name, "start": start, "end": start + size, "partition": p,
                    USERS_SKETCH: users})
            if e.item_id is not None:
                category = item_category.setdefault(e.item_id, e.category)
            if e.item_id is not None and size >= items_from:
                d = docs.setdefault(f"window_item:{name}:{start}:{e.item_id}:p{p}", {
                    "kind": "window_item", "window": name, "start": start, "end": start + size, "partition": p,
                    "item_id": e.item_id, "category": category, "counts": {}, "revenue_cents": 0, "purchases": 0})
                _count(d, e.event_type, paid)
            for dim in DIMENSIONS:
                value = getattr(e, dim)
                if value is not None:
                    d = docs.setdefault(f"window_dim:{name}:{start}:{dim}:{value}:p{p}", {
                        "kind": "window_dim", "window": name, "start": start, "end": start + size, "partition": p,
                        "dim": dim, "value": value, "counts": {}, "revenue_cents": 0, "purchases": 0})
                    _count(d, e.event_type, paid)
        u = docs.setdefault(f"user:{e.user_id}", {"kind": "user", "user_id": e.user_id, "partition": p,
                                                  "first_seen": e.ts, "last_seen": e.ts, "counts": {},
                                                  "spent_cents": 0, "purchases": 0, "last_item": None})
        u["first_seen"] = min(u["first_seen"], e.ts)
        u["last_seen"] = max(u["last_seen"], e.ts)
        if e.item_id is not None and (e.user_id not in last_item or (e.ts, e.item_id) > last_item[e.user_id]):
            last_item[e.user_id] = (e.ts, e.item_id)
            u["last_item"] = e.item_id
        u["counts"][e.event_type] = u["counts"].get(e.event_type, 0) + 1
        if paid is not None:
            u["spent_cents"] += paid
            u["purchases"] += 1
        hour = e.ts // HOUR_MS * HOUR_MS
        row = user_hours[e.user_id].setdefault(hour, {"start": hour, "counts": {}, "revenue_cents": 0, "purchases": 0})
        _count(row, e.event_type, paid)
        if e.item_id is not None:
            d = docs.setdefault(f"item:{e.item_id}:p{p}", {"kind": "item", "item_id": e.item_id, "category": e.category,
                                                           "partition": p, "counts": {}, "revenue_cents": 0,
                                                           "purchases": 0})
            _count(d, e.event_type, paid)

    for user_id, hours in user_hours.items():  # a user's own series: the 24 hours up to their latest event
        u = docs[f"user:{user_id}"]
        oldest = u["last_seen"] // HOUR_MS * HOUR_MS - (USER_HOURS - 1) * HOUR_MS
        u["hours"] = [hours[h] for h in sorted(hours) if h >= oldest]

def _count(doc: dict[str, Any], event_type: str, paid: int | None) -> None:
    doc["counts"][event_type] = doc["counts"].get(event_type, 0) + 1
    if paid is not None:
        doc["revenue_cents"] += paid
        doc["purchases"] += 1
