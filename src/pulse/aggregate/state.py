"""One input partition's aggregation state: validate → late check → de-duplicate → window → entity state.

Everything here is deterministic in the partition's offset order, so a replay after a crash makes the same
decisions. Money is kept in integer cents so sums are exact in any order. The state tracks what changed
since the last flush; :mod:`pulse.aggregate.changelog` and :mod:`pulse.aggregate.docs` serialise only that.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pulse.aggregate.windows import Watermark
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


class Breakdown:
    """Counts per (key, event type) plus revenue per key, for one dimension (item or category).

    Batches are folded in with ``Counter.update`` over zipped columns, which counts in C. Rendered rows are
    cached until their key changes, shared by the changelog and the documents across flushes.
    """

    __slots__ = ("_rows", "category", "counts", "dirty", "revenue", "types", "unpublished")

    def __init__(self, categories: dict[str, str | None] | None = None) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.types: set[str] = set()
        # item → category, first seen wins; window breakdowns share their partition's map
        self.category: dict[str, str | None] = {} if categories is None else categories
        self.revenue: dict[str, list[int]] = {}  # key -> [cents, purchases]
        self.dirty: set[str] = set()  # changed since the last flush (changelog)
        self.unpublished: set[str] = set()  # changed since their document was last published
        self._rows: dict[str, tuple[str | None, dict[str, int], int, int]] = {}

    def add(self, keys: list[str], types: list[str], categories: list[str | None] | None = None) -> None:
        rows = self._rows
        if rows:
            for key in keys:
                rows.pop(key, None)
        self.counts.update(zip(keys, types, strict=True))
        self.types.update(types)
        self.dirty.update(keys)
        if categories is not None:
            for key, cat in zip(keys, categories, strict=True):
                self.category.setdefault(key, cat)

    def add_revenue(self, key: str, amount: int) -> None:
        self._rows.pop(key, None)
        rev = self.revenue.get(key)
        if rev is None:
            self.revenue[key] = [amount, 1]
        else:
            rev[0] += amount
            rev[1] += 1

    def members(self) -> set[str]:
        return {key for key, _ in self.counts}

    def row(self, key: str) -> tuple[str | None, dict[str, int], int, int]:
        """(category, counts per type, revenue cents, purchases) of one key."""
        cached = self._rows.get(key)
        if cached is None:
            counts = self.counts
            per_type = {t: n for t in sorted(self.types) if (n := counts.get((key, t)))}
            cents_, purchases = self.revenue.get(key, (0, 0))
            cached = self._rows[key] = (self.category.get(key), per_type, cents_, purchases)
        return cached

    def load(self, key: str, category: str | None, per_type: dict[str, int], cents_: int, purchases: int,
             unpublished: bool = True) -> None:
        self._rows.clear()
        for t, n in per_type.items():
            self.counts[(key, t)] = n
            self.types.add(t)
        self.category.setdefault(key, category)
        if purchases:
            self.revenue[key] = [cents_, purchases]
        if unpublished:  # logged after the last flush that published this dimension: its document is behind
            self.unpublished.add(key)

    def to_publish(self) -> set[str]:
        return self.dirty | self.unpublished

    def flushed(self, published: bool) -> None:
        if published:
            self.unpublished.clear()
        else:
            self.unpublished |= self.dirty
        self.dirty.clear()


class WindowAgg:
    """Partial aggregates of one tumbling window for one partition."""

    __slots__ = ("cats", "counts", "dirty", "funnel", "items", "new_users", "rev", "size", "start", "status", "users")

    def __init__(self, size: int, start: int, item_categories: dict[str, str | None]) -> None:
        self.size, self.start = size, start
        self.counts: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.rev: list[int] = [0, 0, 0, 0]  # purchases ok: count, sum, min, max (cents)
        self.funnel: list[int] = [0, 0, 0, 0]
        self.users: set[str] = set()
        self.items = Breakdown(item_categories)
        self.cats = Breakdown()
        self.dirty = False
        self.new_users: list[str] = []

    @property
    def end(self) -> int:
        return self.start + self.size

    def add_revenue(self, amount: int) -> None:
        rev = self.rev
        rev[2] = amount if rev[0] == 0 else min(rev[2], amount)
        rev[3] = amount if rev[0] == 0 else max(rev[3], amount)
        rev[0] += 1
        rev[1] += amount


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
    items: Breakdown = field(default_factory=Breakdown)  # current item state (this partition's partial)
    sessions: dict[str, list[int]] = field(default_factory=dict)  # [steps reached, last ts]
    seen: dict[str, int] = field(default_factory=dict)  # event_id -> ts, for duplicate detection
    dirty_users: set[str] = field(default_factory=set)
    unpublished_users: set[str] = field(default_factory=set)
    dirty_sessions: set[str] = field(default_factory=set)
    gone_sessions: set[str] = field(default_factory=set)
    meta_dirty: bool = False
    dead_letters: list[SideOutput] = field(default_factory=list)
    late_events: list[SideOutput] = field(default_factory=list)
    pending: list[tuple[Event, int]] = field(default_factory=list)  # accepted, not yet folded in

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
        step = self._advance_session(result.session_id, result.event_type, ts) if result.status == OK_STATUS else -1
        self.pending.append((result, step))

    def apply_pending(self) -> None:
        """Fold this batch's accepted events into windows and entities, column-wise per window."""
        batch = self.pending
        if not batch:
            return
        self.pending = []
        events = [e for e, _ in batch]
        types = [e.event_type for e in events]
        ts = [e.ts for e in events]
        paid = [(i, cents(e.amount)) for i, e in enumerate(events)
                if e.event_type == "purchase" and e.status == OK_STATUS and e.amount is not None]
        steps = [(i, step) for i, (_, step) in enumerate(batch) if step >= 0]
        for size in self.cfg.window_sizes:
            starts = [t - t % size for t in ts]
            groups: dict[int, list[int]] = {}
            if starts[0] == starts[-1] and len(set(starts)) == 1:
                groups[starts[0]] = list(range(len(events)))
            else:
                for i, start in enumerate(starts):
                    groups.setdefault(start, []).append(i)
            for start, idx in groups.items():
                win = self.window(size, start)
                self._fold(win, [events[i] for i in idx], [types[i] for i in idx])
            for i, amount in paid:
                e = events[i]
                win = self.windows[(size, starts[i])]
                win.add_revenue(amount)
                win.items.add_revenue(e.item_id, amount)  # type: ignore[arg-type]
                if e.category is not None:
                    win.cats.add_revenue(e.category, amount)
            for i, step in steps:
                self.windows[(size, starts[i])].funnel[step] += 1
        with_item = [e for e in events if e.item_id is not None]
        self.items.add([e.item_id for e in with_item], [e.event_type for e in with_item],  # type: ignore[misc]
                       [e.category for e in with_item])
        users = self.users
        for e in events:
            user = users.get(e.user_id)
            t = e.ts
            if user is None:
                user = users[e.user_id] = [t, t, {}, 0, 0, None]
            elif t < user[0]:
                user[0] = t
            if t >= user[1]:
                user[1] = t
                if e.item_id is not None:
                    user[5] = e.item_id
            counts = user[2]
            counts[e.event_type] = counts.get(e.event_type, 0) + 1
        for i, amount in paid:
            e = events[i]
            user = users[e.user_id]
            user[3] += amount
            user[4] += 1
            self.items.add_revenue(e.item_id, amount)  # type: ignore[arg-type]
        self.dirty_users.update(e.user_id for e in events)

    def window(self, size: int, start: int) -> WindowAgg:
        """The window's partial, created on first use."""
        win = self.windows.get((size, start))
        if win is None:
            win = self.windows[(size, start)] = WindowAgg(size, start, self.items.category)
        return win

    @staticmethod
    def _fold(win: WindowAgg, events: list[Event], types: list[str]) -> None:
        win.dirty = True
        win.counts.update(types)
        win.status.update(e.status for e in events)
        new_users = {e.user_id for e in events} - win.users
        if new_users:
            win.users |= new_users
            win.new_users.extend(new_users)
        with_item = [e for e in events if e.item_id is not None]
        win.items.add([e.item_id for e in with_item], [e.event_type for e in with_item])  # type: ignore[misc]
        with_cat = [e for e in events if e.category is not None]
        win.cats.add([e.category for e in with_cat], [e.event_type for e in with_cat])  # type: ignore[misc]

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

    def users_to_publish(self) -> set[str]:
        return self.dirty_users | self.unpublished_users

    def has_unpublished(self) -> bool:
        return bool(self.unpublished_users or self.items.unpublished
                    or any(w.items.unpublished for w in self.windows.values()))

    def clear_dirty(self, published: bool = True, users_published: bool | None = None) -> None:
        """After a committed flush. ``published``: the item documents went out too (details flush);
        ``users_published``: so did the user documents (default: with the items)."""
        for win in self.windows.values():
            win.dirty = False
            win.items.flushed(published)
            win.cats.flushed(True)
            win.new_users.clear()
        if published if users_published is None else users_published:
            self.unpublished_users.clear()
        else:
            self.unpublished_users |= self.dirty_users
        self.dirty_users.clear()
        self.items.flushed(published)
        self.dirty_sessions.clear()
        self.gone_sessions.clear()
        self.dead_letters.clear()
        self.late_events.clear()
        self.meta_dirty = False
