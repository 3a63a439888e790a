"""The aggregates Pulse publishes: one JSON document per window × dimensions × owning partition, per entity.

Every document is owned by one input partition, has a deterministic id, and carries ``version`` = the
owning partition's input position after the batch that produced it, so a projection (Elasticsearch) can
apply them idempotently with external versioning. Readers merge partials across partitions.

Item partials are packed: per window (and for the item state) one document per partition × item shard holds
its items as a nested list, so a busy catalogue costs tens of writes per flush instead of one per item.
:func:`expand` turns packed documents back into one logical row per item (what `pulse verify` compares).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from pulse.aggregate.state import Breakdown, PartitionState, WindowAgg
from pulse.aggregate.windows import label

Doc = tuple[str, dict[str, Any]]
FUNNEL_NAMES = ("view", "click", "add_to_cart", "purchase")
ITEM_SHARDS = 32  # item documents per window × partition; 10k items → ~300 per document


def item_shard(item: str) -> int:
    """Stable across processes and versions (not Python's salted ``hash``)."""
    return zlib.crc32(item.encode()) % ITEM_SHARDS


def _packed(b: Breakdown, changed: set[str] | None) -> list[tuple[int, list[dict[str, Any]]]]:
    """(shard, rendered rows) of every item shard of ``b``, or only of shards holding a ``changed`` item."""
    only = None if changed is None else {item_shard(i) for i in changed}
    groups: dict[int, list[str]] = {}
    for item in b.members():
        shard = item_shard(item)
        if only is None or shard in only:
            groups.setdefault(shard, []).append(item)
    packed = []
    for shard, items in sorted(groups.items()):
        rows = []
        for item in sorted(items):
            cat, counts, revenue, purchases = b.row(item)
            rows.append({"item_id": item, "category": cat, "counts": counts, "revenue_cents": revenue,
                         "purchases": purchases})
        packed.append((shard, rows))
    return packed


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


def window_item_docs(win: WindowAgg, p: int, final: bool, version: int, changed: set[str] | None) -> list[Doc]:
    """The window's item partials, one document per item shard; ``changed``: only shards holding these items
    (None: all shards)."""
    return [(window_id("window_items", win.size, win.start, p, f"s{shard}"),
             _window_base("window_items", win, p, final, version) | {"shard": shard, "items": rows})
            for shard, rows in _packed(win.items, changed)]


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


def item_state_docs(st: PartitionState, changed: set[str], version: int) -> list[Doc]:
    """Current item state (this partition's partial), one document per item shard holding a changed item."""
    return [(f"items:s{shard}:p{st.partition}", {"kind": "items", "partition": st.partition, "shard": shard,
                                                  "items": rows, "version": version})
            for shard, rows in _packed(st.items, changed)]


def partition_doc(st: PartitionState, version: int, flushed_at: int) -> Doc:
    c = st.counters
    return f"partition:{st.partition}", {
        "kind": "partition", "partition": st.partition, "watermark": st.watermark.value,
        "max_event_ts": st.watermark.max_ts, "next_offset": st.next_offset, "accepted": c.accepted,
        "dead_lettered": c.dead_lettered, "late": c.late, "duplicates": c.duplicates, "version": version,
        "flushed_at": flushed_at}


def changed_docs(st: PartitionState, finals: list[WindowAgg], flushed_at: int, details: bool = True,
                 users: bool | None = None) -> list[Doc]:
    """Documents to publish for this flush: changed summaries and categories provisionally, closing windows in
    full as final, on a details flush every item shard changed since it was last published, and when ``users``
    (default: ``details``) every user document changed since then."""
    v, p = st.next_offset, st.partition
    out: list[Doc] = []
    final_ids = {id(w) for w in finals}
    for win in st.windows.values():
        final = id(win) in final_ids
        if final or win.dirty:
            out.append(summary_doc(win, p, final, v))
        if final:
            out.extend(window_item_docs(win, p, True, v, None))
        elif details and (changed := win.items.to_publish()):
            out.extend(window_item_docs(win, p, False, v, changed))
        out.extend(category_doc(win, c, p, final, v) for c in (win.cats.members() if final else win.cats.dirty))
    if details if users is None else users:
        out.extend(user_doc(st, u, v) for u in st.users_to_publish())
    if details and (changed_items := st.items.to_publish()):
        out.extend(item_state_docs(st, changed_items, v))
    if st.meta_dirty or out:
        out.append(partition_doc(st, v, flushed_at))
    return out


def expand(docs: Iterable[Doc]) -> Iterator[Doc]:
    """Packed item documents as one logical document per item (ids ``window_item:…`` and ``item:…``); every
    other document as it is."""
    for doc_id, doc in docs:
        kind = doc.get("kind")
        if kind == "window_items":
            base = {k: doc[k] for k in ("window", "window_ms", "start", "end", "partition", "final", "version")}
            for row in doc["items"]:
                yield (window_id("window_item", doc["window_ms"], doc["start"], doc["partition"], row["item_id"]),
                       {"kind": "window_item", **base, **row})
        elif kind == "items":
            for row in doc["items"]:
                yield (f"item:{row['item_id']}:p{doc['partition']}",
                       {"kind": "item", "partition": doc["partition"], "version": doc["version"], **row})
        else:
            yield doc_id, doc
