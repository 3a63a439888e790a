"""The aggregates Pulse publishes: one JSON document per window × dimensions × owning partition, per entity.

Every document is owned by one input partition, has a deterministic id, and carries ``version`` = the
owning partition's input position after the batch that produced it, so a projection (Elasticsearch) can
apply them idempotently with external versioning. Readers merge partials across partitions.
"""

from __future__ import annotations

from typing import Any

from pulse.aggregate.state import PartitionState, WindowAgg
from pulse.aggregate.windows import label

Doc = tuple[str, dict[str, Any]]
FUNNEL_NAMES = ("view", "click", "add_to_cart", "purchase")


def window_id(kind: str, size: int, start: int, partition: int, dim: str | None = None) -> str:
    middle = f"{dim}:" if dim is not None else ""
    return f"{kind}:{label(size)}:{start}:{middle}p{partition}"


def _window_base(kind: str, win: WindowAgg, p: int, final: bool, version: int) -> dict[str, Any]:
    return {"kind": kind, "window": label(win.size), "window_ms": win.size, "start": win.start, "end": win.end,
            "partition": p, "final": final, "version": version}


def summary_doc(win: WindowAgg, p: int, final: bool, version: int) -> Doc:
    n, total, lo, hi = win.rev
    doc = _window_base("window", win, p, final, version) | {
        "events": sum(win.counts.values()),
        "counts": {t: win.counts[t] for t in sorted(win.counts)},
        "status": {t: win.status[t] for t in sorted(win.status)},
        "errors": sum(v for k, v in win.status.items() if k != "ok"),
        "purchases": n,
        "revenue_cents": total,
        "min_cents": lo if n else None,
        "max_cents": hi if n else None,
        "unique_users": len(win.users),
        "funnel": dict(zip(FUNNEL_NAMES, win.funnel, strict=True)),
    }
    return window_id("window", win.size, win.start, p), doc


def item_doc(st: PartitionState, win: WindowAgg, item: str, final: bool, version: int) -> Doc:
    p = st.partition
    cat, counts, revenue, purchases = win.items.row(item)
    doc = _window_base("window_item", win, p, final, version) | {
        "item_id": item, "category": cat, "counts": dict(counts), "revenue_cents": revenue, "purchases": purchases}
    return window_id("window_item", win.size, win.start, p, item), doc


def category_doc(win: WindowAgg, cat: str, p: int, final: bool, version: int) -> Doc:
    _, counts, revenue, purchases = win.cats.row(cat)
    doc = _window_base("window_category", win, p, final, version) | {
        "category": cat, "counts": dict(counts), "revenue_cents": revenue, "purchases": purchases}
    return window_id("window_category", win.size, win.start, p, cat), doc


def user_doc(st: PartitionState, user: str, version: int) -> Doc:
    first, last, counts, spent, purchases, last_item = st.users[user]
    return f"user:{user}", {"kind": "user", "user_id": user, "partition": st.partition, "first_seen": first,
                            "last_seen": last, "counts": dict(counts), "spent_cents": spent, "purchases": purchases,
                            "last_item": last_item, "version": version}


def item_state_doc(st: PartitionState, item: str, version: int) -> Doc:
    cat, counts, revenue, purchases = st.items.row(item)
    return f"item:{item}:p{st.partition}", {"kind": "item", "item_id": item, "category": cat,
                                            "partition": st.partition, "counts": dict(counts),
                                            "revenue_cents": revenue, "purchases": purchases, "version": version}


def partition_doc(st: PartitionState, version: int, flushed_at: int) -> Doc:
    c = st.counters
    return f"partition:{st.partition}", {
        "kind": "partition", "partition": st.partition, "watermark": st.watermark.value,
        "max_event_ts": st.watermark.max_ts, "next_offset": st.next_offset, "accepted": c.accepted,
        "dead_lettered": c.dead_lettered, "late": c.late, "duplicates": c.duplicates, "version": version,
        "flushed_at": flushed_at}


def changed_docs(st: PartitionState, finals: list[WindowAgg], flushed_at: int, details: bool = True) -> list[Doc]:
    """Documents to publish for this flush: changed summaries and categories provisionally, closing windows in
    full as final, and (on a details flush) every item and user document changed since it was last published."""
    v, p = st.next_offset, st.partition
    out: list[Doc] = []
    final_ids = {id(w) for w in finals}
    for win in st.windows.values():
        final = id(win) in final_ids
        if final or win.dirty:
            out.append(summary_doc(win, p, final, v))
        if final:
            out.extend(item_doc(st, win, i, True, v) for i in win.items.members())
        elif details:
            out.extend(item_doc(st, win, i, False, v) for i in win.items.to_publish())
        out.extend(category_doc(win, c, p, final, v) for c in (win.cats.members() if final else win.cats.dirty))
    if details:
        out.extend(user_doc(st, u, v) for u in st.users_to_publish())
        out.extend(item_state_doc(st, i, v) for i in st.items.to_publish())
    if st.meta_dirty or out:
        out.append(partition_doc(st, v, flushed_at))
    return out
