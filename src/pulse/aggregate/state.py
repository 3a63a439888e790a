"""One input partition's aggregation state: validate → late check → de-duplicate → window → entity state.

Everything here is deterministic in the partition's offset order, so a replay after a crash makes the same
decisions. Money is kept in integer cents so sums are exact in any order. The state tracks what changed
since the last flush; :mod:`pulse.aggregate.changelog` and :mod:`pulse.aggregate.docs` serialise only that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pulse.aggregate.windows import Watermark, window_start
from pulse.events.schema import OK_STATUS, Event
from pulse.events.validate import Rejection, validate

FUNNEL_STEP = {"view": 0, "click": 1, "add_to_cart": 2, "purchase": 3}


@dataclass(frozen=True)
class StateConfig:
    window_sizes: tuple[int, ...] = (10_000, 60_000, 3_600_000)
    grace_ms: int = 30_000
    dedup_horizon_ms: int = 30_000
    session_timeout_ms: int = 30 * 60_000

    def __post_init__(self) -> None:
        if self.dedup_horizon_ms < self.grace_ms:
            raise ValueError("the duplicate horizon must be at least the grace period")


def cents(amount: float) -> int:
    return round(amount * 100)


class WindowAgg:
    """Partial aggregates of one tumbling window for one partition."""

    __slots__ = ("cats", "counts", "dirty", "dirty_cats", "dirty_items", "funnel", "items", "new_users", "rev",
                 "size", "start", "status", "users")

    def __init__(self, size: int, start: int) -> None:
        self.size, self.start = size, start
        self.counts: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.rev: list[int] = [0, 0, 0, 0]  # purchases ok: count, sum, min, max (cents)
        self.funnel: list[int] = [0, 0, 0, 0]
        self.users: set[str] = set()
        self.items: dict[str, list] = {}  # item -> [category, counts, revenue cents, purchases]
        self.cats: dict[str, list] = {}  # category -> [counts, revenue cents, purchases]
        self.dirty = False
        self.dirty_items: set[str] = set()
        self.dirty_cats: set[str] = set()
        self.new_users: list[str] = []

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass
class Counters:
    """Every record of the partition lands in exactly one of these."""

    accepted: int = 0
    dead_lettered: int = 0
    late: int = 0
    duplicates: int = 0

    def as_list(self) -> list[int]:
        return [self.accepted, self.dead_lettered, self.late, self.duplicates]


@dataclass
class SideOutput:
    """A record routed away from the aggregates: to the dead-letter or late-events topic."""

    offset: int
    key: bytes | None
    value: bytes
    reason: str
    detail: str


@dataclass
class PartitionState:
    partition: int
    cfg: StateConfig
    next_offset: int = 0
    watermark: Watermark = field(init=False)
    counters: Counters = field(default_factory=Counters)
    windows: dict[tuple[int, int], WindowAgg] = field(default_factory=dict)
    users: dict[str, list] = field(default_factory=dict)  # [first, last, counts, spent cents, purchases, last item]
    items: dict[str, list] = field(default_factory=dict)  # [category, counts, revenue cents, purchases]
    sessions: dict[str, list[int]] = field(default_factory=dict)  # [steps reached, last ts]
    seen: dict[str, int] = field(default_factory=dict)  # event_id -> ts, for duplicate detection
    dirty_users: set[str] = field(default_factory=set)
    dirty_items: set[str] = field(default_factory=set)
    dirty_sessions: set[str] = field(default_factory=set)
    gone_sessions: set[str] = field(default_factory=set)
    meta_dirty: bool = False
    dead_letters: list[SideOutput] = field(default_factory=list)
    late_events: list[SideOutput] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.watermark = Watermark(self.cfg.grace_ms)

    # -- per record -------------------------------------------------------------------------------------------
    def process(self, offset: int, key: bytes | None, value: bytes | None, record_ts: int) -> None:
        """Route one input record; ``record_ts`` (the Kafka timestamp) anchors the future-time check."""
        self.next_offset = offset + 1
        self.meta_dirty = True
        result = validate(value or b"", record_ts)
        if isinstance(result, Rejection):
            self.counters.dead_lettered += 1
            self.dead_letters.append(SideOutput(offset, key, value or b"", result.reason.value, result.detail))
            return
        ts = result.ts
        wm = self.watermark
        if wm.is_late(ts):
            self.counters.late += 1
            self.late_events.append(SideOutput(offset, key, value or b"", "late", f"ts {ts} < watermark {wm.value}"))
            self.seen.setdefault(result.event_id, ts)
            return
        wm.observe(ts)
        first = self.seen.get(result.event_id)
        if first is not None and first >= wm.value - self.cfg.dedup_horizon_ms:
            self.counters.duplicates += 1
            return
        self.seen[result.event_id] = ts
        self.counters.accepted += 1
        self._apply(result)

    def _apply(self, e: Event) -> None:
        etype, ts, item, cat = e.event_type, e.ts, e.item_id, e.category
        ok = e.status == OK_STATUS
        paid = cents(e.amount) if etype == "purchase" and ok and e.amount is not None else None
        step = self._advance_session(e.session_id, etype, ts) if ok else -1
        for size in self.cfg.window_sizes:
            start = window_start(ts, size)
            win = self.windows.get((size, start))
            if win is None:
                win = self.windows[(size, start)] = WindowAgg(size, start)
            win.dirty = True
            win.counts[etype] = win.counts.get(etype, 0) + 1
            win.status[e.status] = win.status.get(e.status, 0) + 1
            if paid is not None:
                rev = win.rev
                rev[2] = paid if rev[0] == 0 else min(rev[2], paid)
                rev[3] = paid if rev[0] == 0 else max(rev[3], paid)
                rev[0] += 1
                rev[1] += paid
            if step >= 0:
                win.funnel[step] += 1
            if e.user_id not in win.users:
                win.users.add(e.user_id)
                win.new_users.append(e.user_id)
            if item is not None:
                _bump(win.items, item, cat, etype, paid)
                win.dirty_items.add(item)
            if cat is not None:
                agg = win.cats.get(cat)
                if agg is None:
                    agg = win.cats[cat] = [{}, 0, 0]
                agg[0][etype] = agg[0].get(etype, 0) + 1
                if paid is not None:
                    agg[1] += paid
                    agg[2] += 1
                win.dirty_cats.add(cat)
        user = self.users.get(e.user_id)
        if user is None:
            user = self.users[e.user_id] = [ts, ts, {}, 0, 0, None]
        user[0] = min(user[0], ts)
        if ts >= user[1]:
            user[1] = ts
            if item is not None:
                user[5] = item
        user[2][etype] = user[2].get(etype, 0) + 1
        if paid is not None:
            user[3] += paid
            user[4] += 1
        self.dirty_users.add(e.user_id)
        if item is not None:
            _bump(self.items, item, cat, etype, paid)
            self.dirty_items.add(item)

    def _advance_session(self, session_id: str, etype: str, ts: int) -> int:
        """Ordered funnel: a step counts once per session, only right after the previous step was reached.

        A session idle for longer than the timeout (judged against the watermark on arrival, so replays
        agree) starts over; evicting idle sessions from memory is only housekeeping.
        """
        step = FUNNEL_STEP.get(etype, -1)
        session = self.sessions.get(session_id)
        if session is None or session[1] < self.watermark.value - self.cfg.session_timeout_ms:
            session = self.sessions[session_id] = [0, ts]
        session[1] = max(session[1], ts)
        self.dirty_sessions.add(session_id)
        if step >= 0 and session[0] == step:
            session[0] = step + 1
            return step
        return -1

    # -- per flush --------------------------------------------------------------------------------------------
    def final_windows(self) -> list[WindowAgg]:
        wm = self.watermark
        return [w for w in self.windows.values() if wm.is_final(w.start, w.size)]

    def expire(self) -> None:
        """Forget idle sessions (tombstoned on this flush) and duplicate ids past the horizon."""
        wm = self.watermark.value
        horizon = wm - self.cfg.dedup_horizon_ms
        if len(self.seen) > 4096:
            self.seen = {k: v for k, v in self.seen.items() if v >= horizon}
        idle = wm - self.cfg.session_timeout_ms
        for sid in [s for s, (_, last) in self.sessions.items() if last < idle]:
            del self.sessions[sid]
            self.dirty_sessions.discard(sid)
            self.gone_sessions.add(sid)

    def drop(self, finals: list[WindowAgg]) -> None:
        """Evict closed windows once their final documents and tombstones are written."""
        for win in finals:
            del self.windows[(win.size, win.start)]

    def clear_dirty(self) -> None:
        for win in self.windows.values():
            win.dirty = False
            win.dirty_items.clear()
            win.dirty_cats.clear()
            win.new_users.clear()
        self.dirty_users.clear()
        self.dirty_items.clear()
        self.dirty_sessions.clear()
        self.gone_sessions.clear()
        self.dead_letters.clear()
        self.late_events.clear()
        self.meta_dirty = False


def _bump(table: dict[str, list], item: str, cat: str | None, etype: str, paid: int | None) -> None:
    agg = table.get(item)
    if agg is None:
        agg = table[item] = [cat, {}, 0, 0]
    agg[1][etype] = agg[1].get(etype, 0) + 1
    if paid is not None:
        agg[2] += paid
        agg[3] += 1
