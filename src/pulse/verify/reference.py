"""A deliberately simple recompute of every Pulse aggregate from raw input records, in one pass.

It shares no aggregation code with the engine (only the event contract, ``validate``, the generator's
partitioner, and the model's names: funnel steps and dimensions): plain dicts, one event at a time, per
partition in offset order, with the documented rules:
- a valid event whose user Kafka's default partitioner puts in another partition (input not keyed by user id) is
  counted by that partition, at the point its recorded decisions say it took the record;
- watermark = the partition's event clock − grace, or a floor the aggregator recorded for a quiet partition
  (from that input offset on) if higher; an event below it on arrival is late. The event clock is the max event
  time seen, each capped at its record's Kafka timestamp; once records forwarded from other partitions arrive, it
  is the slowest of the streams (own input, each forwarding partition) that are within the forward wait of the
  fastest, and never goes back;
- an ``event_id`` seen (not as a duplicate) with event time ≥ watermark − horizon is a duplicate;
- funnel steps count once per session, in order, for ``ok`` events; a session idle past the timeout restarts;
- money in integer cents.
Its output has the engine's document ids and fields, so the two can be diffed exactly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pulse.aggregate.model import (
    DIMENSIONS,
    EXACT_USERS_UP_TO_MS,
    FUNNEL,
    SKETCH_USERS_FROM_MS,
    USERS_SKETCH,
    sketch_field,
)
from pulse.events.schema import Event
from pulse.events.validate import Rejection, validate
from pulse.generate.partitioner import partition_for

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


@dataclass(frozen=True)
class Floor:
    """From input offset ``offset`` on, the partition's watermark is at least ``floor`` (a quiet partition)."""
    offset: int
    floor: int


@dataclass(frozen=True)
class Take:
    """At input offset ``offset``, the partition took the records forwarded to it before repartition offset
    ``until``."""
    offset: int
    until: int


Decisions = dict[int, list[Floor | Take]]
"""Per partition, the aggregator's recorded decisions, in the order it took them."""
Forwarded = dict[int, list[tuple[int, int, int]]]
"""Per owning partition, the repartition topic's records as (repartition offset, input partition, input offset)."""
Verdict = Event | Rejection
Item = tuple[Verdict, int, int] | int  # a record (verdict, record timestamp, stream), or a watermark floor


def recompute(records: Iterable[tuple[int, int, bytes | None, int]], window_sizes: Iterable[int], grace_ms: int,
              horizon_ms: int, session_timeout_ms: int = 30 * 60_000, decisions: Decisions | None = None,
              forwarded: Forwarded | None = None, partitions: int = 0, forward_wait_ms: int = 300_000) -> Expected:
    """``records``: (partition, offset, value, record timestamp ms) in any order. ``partitions``: the input topic's
    partition count, to tell records whose user another partition owns (0: every record counts where read)."""
    by_partition: dict[int, list[tuple[int, Verdict, int]]] = defaultdict(list)
    away: dict[tuple[int, int], tuple[Verdict, int]] = {}  # records counted by another partition
    out = Expected()
    for partition, offset, value, record_ts in records:
        out.produced += 1
        verdict = validate(value or b"", record_ts)
        if partitions and isinstance(verdict, Event) \
                and partition_for(verdict.user_id.encode(), partitions) != partition:
            away[(partition, offset)] = (verdict, record_ts)
            out.forwarded += 1
        else:
            by_partition[partition].append((offset, verdict, record_ts))
    taken = _forwarded_records(away, forwarded or {}, out)
    for partition in sorted(by_partition.keys() | taken.keys()):
        rows = sorted(by_partition.get(partition, []), key=lambda r: r[0])
        items = _sequence(partition, rows, (decisions or {}).get(partition, []), taken.get(partition, []))
        accepted = _classify(partition, items, grace_ms, horizon_ms, forward_wait_ms, out)
        _aggregate(partition, accepted, list(window_sizes), session_timeout_ms, out)
    return out


def _forwarded_records(away: dict[tuple[int, int], tuple[Verdict, int]], forwarded: Forwarded,
                       out: Expected) -> dict[int, list[tuple[int, Verdict, int, int]]]:
    """Each owning partition's forwarded records, from the input itself, in repartition order; every record that
    belongs elsewhere must be there exactly once."""
    seen = Counter((p, o) for records in forwarded.values() for _, p, o in records)
    missing = [key for key in away if key not in seen]
    twice = [key for key, n in seen.items() if n > 1]
    unknown = [key for key in seen if key not in away]
    for what, keys in (("input records whose user another partition owns were never forwarded to it", missing),
                       ("input records were forwarded more than once", twice),
                       ("forwarded records are not input records of another partition's user", unknown)):
        if keys:
            out.problems.append(f"{len(keys)} {what}, e.g. partition {keys[0][0]} offset {keys[0][1]}")
    if missing and not forwarded:
        out.problems.append("the aggregator group has no repartition topic: is --group the aggregator's group?")
    return {owner: [(r, *away[(p, o)], p) for r, p, o in sorted(records) if (p, o) in away]
            for owner, records in forwarded.items()}


def _sequence(partition: int, rows: list[tuple[int, Verdict, int]], decisions: list[Floor | Take],
              taken: list[tuple[int, Verdict, int, int]]) -> Iterator[Item]:
    """The partition's records and floors in the order the aggregator met them: its own input in offset order,
    with each recorded decision applied before the input record at its offset."""
    pending = iter(taken)
    nxt = next(pending, None)
    at = 0

    def apply(upto: int | None) -> Iterator[Item]:
        nonlocal at, nxt
        while at < len(decisions) and (upto is None or decisions[at].offset <= upto):
            d = decisions[at]
            at += 1
            if isinstance(d, Floor):
                yield d.floor
                continue
            while nxt is not None and nxt[0] < d.until:
                yield nxt[1], nxt[2], nxt[3]
                nxt = next(pending, None)

    for offset, verdict, record_ts in rows:
        yield from apply(offset)
        yield verdict, record_ts, partition
    yield from apply(None)
    while nxt is not None:  # forwarded but not taken yet: the aggregator takes them at its next flush
        yield nxt[1], nxt[2], nxt[3]
        nxt = next(pending, None)


def _classify(partition: int, items: Iterable[Item], grace_ms: int, horizon_ms: int, forward_wait_ms: int,
              out: Expected) -> list[tuple[Event, int]]:
    """Returns the accepted events with the watermark in force when each arrived."""
    max_ts = None  # the largest event clock of any stream
    clock = None  # the event clock the watermark follows
    streams: dict[int, int | None] = {}  # per stream its largest event clock, once another partition forwarded
    floor = None
    first_seen: dict[str, int] = {}
    accepted = []

    def observe(stream: int, at: int) -> None:
        nonlocal max_ts, clock
        if not streams:
            if stream == partition:
                if max_ts is None or at > max_ts:
                    max_ts = clock = at
                return
            streams[partition] = max_ts  # every record so far was the partition's own
        before = streams.get(stream)
        if before is not None and at <= before:
            return
        streams[stream] = at
        max_ts = at if max_ts is None else max(max_ts, at)
        within = [c for c in streams.values() if c is not None and c >= max_ts - forward_wait_ms]
        slowest = min(within) if within else max_ts
        clock = slowest if clock is None else max(clock, slowest)

    def mark() -> int | None:
        by_events = None if clock is None else clock - grace_ms
        if floor is None or (by_events is not None and by_events > floor):
            return by_events
        return floor

    for item in items:
        if isinstance(item, int):
            floor = item if floor is None else max(floor, item)
            continue
        event, record_ts, stream = item
        if not isinstance(event, Event):
            out.dead_lettered += 1
            continue
        watermark = mark()
        if watermark is not None and event.ts < watermark:
            out.late += 1
            if event.event_id not in first_seen:
                first_seen[event.event_id] = event.ts
            continue
        observe(stream, min(event.ts, record_ts))  # the event clock never runs ahead of the record's timestamp
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
    user_hours: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
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
        if e.ts >= u["last_seen"]:
            u["last_seen"] = e.ts
            if e.item_id is not None:
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
