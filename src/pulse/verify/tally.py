"""The reference's arithmetic: one partition's counted events into the engine's documents, in plain dicts.

It shares no aggregation code with the engine (only the model's names: funnel steps, dimensions, where users are
exact and items broken down), and follows the documented rules:
- funnel steps count in event-time order per session (by time, then step): once per run, only right after the
  previous step, for ``ok`` events; a gap longer than the session timeout starts a new run;
- a user's last item is the item of their latest event that has one (the greater id on a tie); a user document
  keeps the 24 hours up to the user's latest event;
- an item's category is the first one seen in the partition;
- money in integer cents.
Windows are handed out once the owner's watermark passed their end (no event counted on time can reach them any
more); funnel steps are settled up to the watermark first, since an event counted later may come before them in
time. Users and items stay until :meth:`PartitionTally.finish`. A correction counts, straight from the event, in
the revisions of its windows of every size (summed over every revision: :meth:`PartitionTally.revisions`), in its
user and its item. A window's own document counts the users counted on time; its revisions, summed, the other
users corrections counted.

Funnels with corrections: a correction of an ok event joins its session if the session is held (its latest event
counted on time is no more than the session timeout before the owner watermark when the correction is counted).
It sits after the session's events below that watermark and before the others, and neither starts nor ends a
run: it counts its step if that is the next one of the run with the corrections that joined it before. So the
session has a second track, settled up to the owner watermark (not the hand-out point, which may run ahead of
it); a revision holds, per event, the step it counts for on that track minus the one it counts for on time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
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
from pulse.verify.order import NEVER, UNCHECKED
from pulse.verify.walk import Doc

STEPS = list(FUNNEL)
HOUR_MS = 3_600_000
USER_HOURS = 24  # the hours a user document keeps, up to the user's latest event
UNITS = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
AMOUNT, PRICE = sketch_field("amount"), sketch_field("price")


def size_label(ms: int) -> str:
    for unit, n in UNITS:
        if ms % n == 0:
            return f"{ms // n}{unit}"
    return f"{ms}ms"


def _count(doc: dict[str, Any], event_type: str, paid: int | None) -> None:
    doc["counts"][event_type] = doc["counts"].get(event_type, 0) + 1
    if paid is not None:
        doc["revenue_cents"] += paid
        doc["purchases"] += 1


def _paid(e: Event) -> int | None:
    """The cents of an ok purchase."""
    return round(e.amount * 100) if e.event_type == "purchase" and e.status == "ok" and e.amount is not None else None


def _new_window(head: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "window", **head, "events": 0, "counts": {}, "status": {}, "errors": 0, "purchases": 0,
            "revenue_cents": 0, "min_cents": None, "max_cents": None, "unique_users": 0,
            "funnel": dict.fromkeys(STEPS, 0),
            AMOUNT: [], PRICE: []}  # the exact values whose quantiles the window's sketches estimate


def _count_window(w: dict[str, Any], e: Event, paid: int | None) -> None:
    """One event in a window summary (not its funnel, nor its users)."""
    w["events"] += 1
    w["counts"][e.event_type] = w["counts"].get(e.event_type, 0) + 1
    w["status"][e.status] = w["status"].get(e.status, 0) + 1
    if e.status != "ok":
        w["errors"] += 1
    if paid is not None:
        w["purchases"] += 1
        w["revenue_cents"] += paid
        w["min_cents"] = paid if w["min_cents"] is None else min(w["min_cents"], paid)
        w["max_cents"] = paid if w["max_cents"] is None else max(w["max_cents"], paid)
        w[AMOUNT].append(paid)
        if e.price is not None:
            w[PRICE].append(round(e.price * 100))


def _merge_counts(into: dict[str, Any], d: dict[str, Any]) -> None:
    for k, n in d["counts"].items():
        into["counts"][k] = into["counts"].get(k, 0) + n
    into["revenue_cents"] += d["revenue_cents"]
    into["purchases"] += d["purchases"]


@dataclass(frozen=True)
class Level:
    """One window size, and where its numbers come from: events (the smallest sizes), or the finished windows
    of the largest smaller size that divides it (every event of such a window falls in exactly one of its own)."""
    size: int
    name: str
    feeder: int | None  # the size it is merged from (None: it counts events)
    items: bool  # broken down by item
    counts_items: bool  # its item rows count events (its feeder has none)
    parents: tuple[int, ...]  # the sizes its finished windows merge into


def levels(sizes: list[int]) -> dict[int, Level]:
    ordered = sorted(set(sizes))
    items_from = min(ITEMS_FROM_MS, max(ordered))  # shorter windows are not broken down by item
    feeders = {s: max((f for f in ordered if f < s and s % f == 0), default=None) for s in ordered}
    return {s: Level(s, size_label(s), feeders[s], s >= items_from,
                     s >= items_from and (feeders[s] is None or feeders[s] < items_from),  # type: ignore[operator]
                     tuple(p for p in ordered if feeders[p] == s)) for s in ordered}


class PartitionTally:
    """Partition ``partition``'s documents, built event by event in the order the partition counted them.

    Each event is counted once per size that counts events; a finished window is merged into the windows it
    nests in (:class:`Level`), which therefore finish after it."""

    def __init__(self, partition: int, sizes: list[int], session_timeout_ms: int,
                 unseen_before: int | None = None) -> None:
        """``unseen_before``: the walk starts mid-input (a range), and events before this time may exist that it
        never sees. A session that may have such events within its timeout has an unknown funnel state until a gap
        longer than the timeout: the windows its events fall in get their ``funnel`` marked unchecked. Item rows'
        ``category`` (the first seen in the partition) is unchecked too."""
        self.p = partition
        self.unseen_before = unseen_before
        self.levels = levels(sizes)
        self._roots = [lv for lv in self.levels.values() if lv.feeder is None]
        self._item_roots = [lv for lv in self.levels.values() if lv.counts_items and lv.feeder is not None]
        self.session_timeout = session_timeout_ms
        self.watermark = NEVER
        self._open: dict[str, dict[str, Any]] = {}  # window documents (of every kind) not finished yet
        self._ends: list[tuple[int, int, str]] = []  # (end, size, id) of the open documents: nested ones first
        self._users_of: dict[str, set[str]] = {}  # a window's distinct users, by its ``window:`` id
        self._funnel: list[tuple[int, int, int, str]] = []  # unsettled ok events: (ts, step or -1, order, session)
        # session → (steps done in the run, its last event time, whether unseen events may precede the run)
        self._sessions: dict[str, tuple[int, int, bool]] = {}
        self._order = 0
        self._kept_sessions = 0  # sessions left after the last forgetting
        # the funnel with the corrections that joined, settled up to the owner watermark: unsettled ok events,
        # session → (steps done, last event time), each session's latest on-time ok event, and the on-time step of
        # the events settled on time but not on this track yet (by order)
        self._revised_funnel: list[tuple[int, int, int, str]] = []
        self._revised_sessions: dict[str, tuple[int, int | None]] = {}
        self._latest: dict[str, int] = {}
        self._on_time_step: dict[int, int] = {}
        self._kept_revised = 0
        self._revisions: dict[str, dict[str, Any]] = {}  # corrections, by the id of the document they revise
        self._revision_users: dict[str, set[str]] = {}  # users a window's corrections counted
        self._on_time: set[tuple[int, int, str]] = set()  # (size, start, user), of the sizes counting users exactly
        self.users: dict[str, dict[str, Any]] = {}
        self._hours: dict[str, dict[int, dict[str, Any]]] = {}
        self._last_item: dict[str, tuple[int, str]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self._category: dict[str, str | None] = {}

    def add(self, e: Event) -> None:
        ok = e.status == "ok"
        paid = _paid(e)
        if ok:
            step = STEPS.index(e.event_type) if e.event_type in STEPS else -1
            heapq.heappush(self._funnel, (e.ts, step, self._order, e.session_id))
            heapq.heappush(self._revised_funnel, (e.ts, step, self._order, e.session_id))
            self._order += 1
            self._latest[e.session_id] = max(e.ts, self._latest.get(e.session_id, e.ts))
        category = self._category.setdefault(e.item_id, e.category) if e.item_id is not None else None
        for lv in self.levels.values():
            if lv.size <= EXACT_USERS_UP_TO_MS:
                self._on_time.add((lv.size, e.ts // lv.size * lv.size, e.user_id))
        for lv in self._roots:
            start = e.ts // lv.size * lv.size
            _count_window(self._window(lv, start), e, paid)
            self._users_of[f"window:{lv.name}:{start}:p{self.p}"].add(e.user_id)
            for dim in DIMENSIONS:
                value = getattr(e, dim)
                if value is not None:
                    _count(self._dim(lv, start, dim, value), e.event_type, paid)
        if e.item_id is not None:
            for lv in self._roots + self._item_roots:
                if lv.counts_items:
                    _count(self._item(lv, e.ts // lv.size * lv.size, e.item_id, category), e.event_type, paid)
        self._entities(e, paid)

    def correct(self, e: Event, watermark: int) -> None:
        """A correction counted at owner watermark ``watermark``: in the revisions of its windows of every size,
        its user and its item, and in its session's funnel if the session is held."""
        paid = _paid(e)
        category = self._category.setdefault(e.item_id, e.category) if e.item_id is not None else None
        revs = self._revisions
        if e.status == "ok" and e.event_type in STEPS:
            self._join(e, watermark)
        for lv in self.levels.values():
            start = e.ts // lv.size * lv.size
            head = self._head(lv, start)
            wid = f"window:{lv.name}:{start}:p{self.p}"
            w = self._revision(lv, start)
            _count_window(w, e, paid)
            self._revision_users[wid].add(e.user_id)
            if lv.size >= SKETCH_USERS_FROM_MS:
                uid = f"window_users:{lv.name}:{start}:p{self.p}"
                revs.setdefault(uid, {"kind": "window_users", **head, USERS_SKETCH: set()})[USERS_SKETCH].add(e.user_id)
            for dim in DIMENSIONS:
                value = getattr(e, dim)
                if value is not None:
                    rid = f"window_dim:{lv.name}:{start}:{dim}:{value}:p{self.p}"
                    row = revs.setdefault(rid, {"kind": "window_dim", "dim": dim, "value": value, **head, "counts": {},
                                                "revenue_cents": 0, "purchases": 0})
                    _count(row, e.event_type, paid)
            if e.item_id is not None and lv.items:
                rid = f"window_item:{lv.name}:{start}:{e.item_id}:p{self.p}"
                row = revs.setdefault(rid, {"kind": "window_item", "item_id": e.item_id, "category": category,
                                            **head, "counts": {}, "revenue_cents": 0, "purchases": 0})
                if self.unseen_before is not None:
                    row[UNCHECKED] = {"category"}
                _count(row, e.event_type, paid)
        self._entities(e, paid)

    def _revision(self, lv: Level, start: int) -> dict[str, Any]:
        wid = f"window:{lv.name}:{start}:p{self.p}"
        w = self._revisions.get(wid)
        if w is None:
            w = self._revisions[wid] = _new_window(self._head(lv, start))
            self._revision_users[wid] = set()
        return w

    def _revise_step(self, ts: int, step: int, delta: int) -> None:
        for lv in self.levels.values():
            funnel = self._revision(lv, ts // lv.size * lv.size)["funnel"]
            funnel[STEPS[step]] += delta

    def _join(self, e: Event, watermark: int) -> None:
        """A correction's funnel step, with the corrections that joined before it, if its session is held."""
        self._settle_funnel(watermark)  # nothing on time can fall below the owner watermark any more
        self._settle_revised(watermark)
        session = e.session_id
        latest = self._latest.get(session)
        if latest is None or latest < watermark - self.session_timeout:
            return
        done, last = self._revised_sessions.get(session, (0, None))
        if STEPS.index(e.event_type) == done:
            self._revised_sessions[session] = (done + 1, last)
            self._revise_step(e.ts, done, 1)

    def _settle_revised(self, before: int | None) -> None:
        """Settle the with-corrections track up to ``before`` (all: None): each event's step there, against the
        one it counted for on time, goes to the revisions."""
        pending, sessions, timeout = self._revised_funnel, self._revised_sessions, self.session_timeout
        while pending and (before is None or pending[0][0] < before):
            ts, step, order, session = heapq.heappop(pending)
            done, last = sessions.get(session, (0, None))
            if last is not None and ts - last > timeout:
                done = 0
            revised = step if step == done else -1
            on_time = self._on_time_step.pop(order)
            if revised != on_time:
                if revised >= 0:
                    self._revise_step(ts, revised, 1)
                if on_time >= 0:
                    self._revise_step(ts, on_time, -1)
            sessions[session] = (done + (revised >= 0), ts)
        if before is not None and len(sessions) > 2 * self._kept_revised + 1024:
            stale = before - timeout  # not held any more, and a run starts over after it anyway
            for session in [s for s, (_, last) in sessions.items() if last is not None and last < stale]:
                del sessions[session]
            for session in [s for s, latest in self._latest.items() if latest < stale]:
                del self._latest[session]
            self._kept_revised = len(sessions)

    def revisions(self) -> list[Doc]:
        """Every window document's corrections, summed over its revisions (ids as the window's own)."""
        for wid, users in self._revision_users.items():
            w = self._revisions[wid]
            size = w["end"] - w["start"]
            w["unique_users"] = sum((size, w["start"], u) not in self._on_time for u in users) \
                if size <= EXACT_USERS_UP_TO_MS else None
        return list(self._revisions.items())

    def _entities(self, e: Event, paid: int | None) -> None:
        self._user(e, paid)
        if e.item_id is not None:
            d = self.items.get(e.item_id)
            if d is None:
                d = self.items[e.item_id] = {"kind": "item", "item_id": e.item_id, "category": e.category,
                                             "partition": self.p, "counts": {}, "revenue_cents": 0, "purchases": 0}
            _count(d, e.event_type, paid)

    def _head(self, lv: Level, start: int) -> dict[str, Any]:
        return {"window": lv.name, "start": start, "end": start + lv.size, "partition": self.p}

    def _window(self, lv: Level, start: int) -> dict[str, Any]:
        wid = f"window:{lv.name}:{start}:p{self.p}"
        w = self._open.get(wid)
        if w is None:
            head = self._head(lv, start)
            w = self._open[wid] = _new_window(head)
            heapq.heappush(self._ends, (head["end"], lv.size, wid))
            users: set[str] = set()
            self._users_of[wid] = users
            if lv.size >= SKETCH_USERS_FROM_MS:  # the exact set whose size the window's HyperLogLog estimates
                uid = f"window_users:{lv.name}:{start}:p{self.p}"
                self._open[uid] = {"kind": "window_users", **head, USERS_SKETCH: users}
                heapq.heappush(self._ends, (head["end"], lv.size, uid))
        return w

    def _dim(self, lv: Level, start: int, dim: str, value: str) -> dict[str, Any]:
        return self._row(lv, start, f"window_dim:{lv.name}:{start}:{dim}:{value}:p{self.p}",
                         {"kind": "window_dim", "dim": dim, "value": value})

    def _item(self, lv: Level, start: int, item_id: str, category: str | None) -> dict[str, Any]:
        return self._row(lv, start, f"window_item:{lv.name}:{start}:{item_id}:p{self.p}",
                         {"kind": "window_item", "item_id": item_id, "category": category})

    def _row(self, lv: Level, start: int, rid: str, fields: dict[str, Any]) -> dict[str, Any]:
        d = self._open.get(rid)
        if d is None:
            head = self._head(lv, start)
            d = self._open[rid] = {**fields, **head, "counts": {}, "revenue_cents": 0, "purchases": 0}
            if self.unseen_before is not None and fields["kind"] == "window_item":
                d[UNCHECKED] = {"category"}
            heapq.heappush(self._ends, (head["end"], lv.size, rid))
        return d

    def _merge_up(self, lv: Level, doc_id: str, d: dict[str, Any]) -> None:
        """Add a finished window document of size ``lv`` to the windows it nests in."""
        kind = d["kind"]
        for size in lv.parents:
            up = self.levels[size]
            start = d["start"] // size * size
            if kind == "window":
                w = self._window(up, start)
                for name in ("events", "errors", "purchases", "revenue_cents"):
                    w[name] += d[name]
                for name in ("counts", "status", "funnel"):
                    for k, n in d[name].items():
                        w[name][k] = w[name].get(k, 0) + n
                for name, pick in (("min_cents", min), ("max_cents", max)):
                    if d[name] is not None:
                        w[name] = d[name] if w[name] is None else pick(w[name], d[name])
                w[AMOUNT] += d[AMOUNT]
                w[PRICE] += d[PRICE]
                if UNCHECKED in d:
                    w.setdefault(UNCHECKED, set()).update(d[UNCHECKED])
                self._users_of[f"window:{up.name}:{start}:p{self.p}"] |= self._users_of[doc_id]
            elif kind == "window_dim":
                _merge_counts(self._dim(up, start, d["dim"], d["value"]), d)
            elif kind == "window_item" and not up.counts_items:
                _merge_counts(self._item(up, start, d["item_id"], d["category"]), d)

    def _user(self, e: Event, paid: int | None) -> None:
        u = self.users.get(e.user_id)
        if u is None:
            u = self.users[e.user_id] = {"kind": "user", "user_id": e.user_id, "partition": self.p,
                                         "first_seen": e.ts, "last_seen": e.ts, "counts": {}, "spent_cents": 0,
                                         "purchases": 0, "last_item": None}
            self._hours[e.user_id] = {}
        u["first_seen"] = min(u["first_seen"], e.ts)
        u["last_seen"] = max(u["last_seen"], e.ts)
        if e.item_id is not None:
            last = self._last_item.get(e.user_id)
            if last is None or (e.ts, e.item_id) > last:
                self._last_item[e.user_id] = (e.ts, e.item_id)
                u["last_item"] = e.item_id
        u["counts"][e.event_type] = u["counts"].get(e.event_type, 0) + 1
        if paid is not None:
            u["spent_cents"] += paid
            u["purchases"] += 1
        hours = self._hours[e.user_id]
        hour = e.ts // HOUR_MS * HOUR_MS
        row = hours.get(hour)
        if row is None:
            row = hours[hour] = {"start": hour, "counts": {}, "revenue_cents": 0, "purchases": 0}
            if len(hours) > USER_HOURS:  # only the hours up to the latest event are kept
                oldest = self._oldest_hour(u)
                for h in [h for h in hours if h < oldest]:
                    del hours[h]
        _count(row, e.event_type, paid)

    @staticmethod
    def _oldest_hour(u: dict[str, Any]) -> int:
        return int(u["last_seen"]) // HOUR_MS * HOUR_MS - (USER_HOURS - 1) * HOUR_MS

    def advance(self, watermark: int, owner: int) -> list[Doc]:
        """The window documents no counted event can change any more, now that nothing below ``watermark``
        counts on time: those that end at or before it. ``owner``: the owner watermark (at most ``watermark``)."""
        self.watermark = watermark
        self._settle_funnel(watermark)
        self._settle_revised(owner)
        return self._finish_windows(watermark)

    def finish(self) -> tuple[list[Doc], list[Doc]]:
        """Everything left at the end of the input: the open window documents, and the users and items."""
        self._settle_funnel(None)
        self._settle_revised(None)
        windows = self._finish_windows(None)
        entities: list[Doc] = []
        for user_id, u in self.users.items():
            hours = self._hours[user_id]
            oldest = self._oldest_hour(u)
            u["hours"] = [hours[h] for h in sorted(hours) if h >= oldest]
            entities.append((f"user:{user_id}", u))
        entities += [(f"item:{item_id}:p{self.p}", d) for item_id, d in self.items.items()]
        return windows, entities

    def _settle_funnel(self, before: int | None) -> None:
        """Count the funnel steps of the ok events before ``before`` (all: None), in (time, step) order."""
        pending, sessions, timeout = self._funnel, self._sessions, self.session_timeout
        while pending and (before is None or pending[0][0] < before):
            ts, step, order, session = heapq.heappop(pending)
            done, last, unsure = sessions.get(session) or (0, ts, self.unseen_before is not None
                                                           and ts - timeout < self.unseen_before)
            if ts - last > timeout:
                done, unsure = 0, False
            counted = step == done
            self._on_time_step[order] = step if counted else -1
            if counted or unsure:
                for lv in self._roots:
                    w = self._open[f"window:{lv.name}:{ts // lv.size * lv.size}:p{self.p}"]
                    if counted:
                        w["funnel"][STEPS[step]] += 1
                    if unsure:
                        w.setdefault(UNCHECKED, set()).add("funnel")
            done += counted
            sessions[session] = (done, ts, unsure)
        if before is not None and len(sessions) > 2 * self._kept_sessions + 1024:
            # a session quiet for longer than the timeout starts over anyway: forget it
            stale = before - timeout
            for session in [s for s, (_, last, _) in sessions.items() if last < stale]:
                del sessions[session]
            self._kept_sessions = len(sessions)

    def _finish_windows(self, upto: int | None) -> list[Doc]:
        out: list[Doc] = []
        ends, docs = self._ends, self._open
        while ends and (upto is None or ends[0][0] <= upto):
            _, size, doc_id = heapq.heappop(ends)
            d = docs.pop(doc_id)
            self._merge_up(self.levels[size], doc_id, d)
            if d["kind"] == "window":
                users = self._users_of.pop(doc_id)
                d["unique_users"] = len(users) if size <= EXACT_USERS_UP_TO_MS else None
            out.append((doc_id, d))
        return out
