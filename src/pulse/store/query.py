"""The one query module: exact reads over Pulse's documents, merging per-partition partials.

Used by `pulse verify`, the dashboard's JSON API and the tests. Every document is a partial owned by one input
partition, so reads merge: Σcount, Σsum, min of mins, max of maxes, avg = Σsum/Σcount, unique users = Σ
per-partition uniques (users are partitioned by key, so partials never overlap), top-N = Σ per item, then rank.

Which documents answer depends on the filters:
- none or an event type: window summaries (``kind=window``);
- an item (and optionally its category): the per-window item breakdowns (packed per item shard, read through
  nested queries and aggregations);
- one dimension (category, status, country or device, :data:`pulse.aggregate.model.DIMENSIONS`): the window's
  breakdown rows (``kind=window_dims``: found by the value's keyword in ``values``, the row taken from the stored
  ``breakdown``). Each dimension is broken down on its own, so two dimensions at once are refused rather than
  answered from another source;
- a user: that user's own document (``user:<id>``), whose ``hours`` hold counts and revenue per hour for the
  24 hours up to their latest event; the series is hourly and covers the whole hours the range touches. The
  raw event archive serves only the user's timeline (late events included, since they did happen).
Filter values reach Elasticsearch only inside structured ``term``/``range`` clauses, never as query strings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError, helpers

from pulse.aggregate.model import (
    DIMENSIONS,
    EXACT_USERS_UP_TO_MS,
    FUNNEL,
    ITEMS_FROM_MS,
    PARTITION_COUNTERS,
    SKETCHED,
    USERS_SKETCH,
    MergedSketch,
    MergedUsers,
    sketch_field,
)
from pulse.store.indices import DEFAULT_PREFIX, FAMILIES, alias, heartbeat_index, index_for

STEPS = FUNNEL
WINDOW_MS = {"10s": 10_000, "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
MAX_BUCKETS = 400


@dataclass(frozen=True)
class Filters:
    """A time range [start_ms, end_ms) plus optional dimension filters."""

    start_ms: int
    end_ms: int
    event_type: str | None = None
    item_id: str | None = None
    category: str | None = None
    user_id: str | None = None
    status: str | None = None
    country: str | None = None
    device: str | None = None

    def dimensions(self) -> dict[str, str]:
        """The dimension filters that are set, by dimension name."""
        return {dim: value for dim in DIMENSIONS if (value := getattr(self, dim)) is not None}

    @property
    def dimension(self) -> tuple[str, str] | None:
        """The one dimension filter the breakdowns answer (None: no dimension filter, or an item's)."""
        dims = self.dimensions()
        return next(iter(dims.items())) if len(dims) == 1 and not self.item_id else None

    @property
    def source(self) -> str:
        if self.user_id:
            return "user"
        if self.item_id:
            return "items"
        if self.dimensions():
            return "dims"
        return "windows"

    def problem(self) -> str | None:
        """Why the aggregates cannot answer this combination of filters (None: they can)."""
        dims = set(self.dimensions())
        if self.user_id:
            return None if not (dims or self.item_id) else \
                "a user filter combines only with an event type (a user's hours are not broken down further)"
        if self.item_id and dims - {"category"}:
            return "an item filter combines only with a category (items are not broken down by status, country " \
                   "or device)"
        if not self.item_id and len(dims) > 1:
            return f"filter by one of {', '.join(DIMENSIONS)} at a time: each is broken down on its own"
        return None

    def window(self) -> str:
        """The smallest window size that keeps the series under MAX_BUCKETS points (a user's: hours; an item's:
        only windows broken down by item)."""
        if self.user_id:
            return "1h"
        return self.item_window() if self.item_id else _fitting(self.end_ms - self.start_ms, WINDOW_MS)

    def item_window(self) -> str:
        """The smallest window broken down by item that keeps the range under MAX_BUCKETS windows."""
        return _fitting(self.end_ms - self.start_ms, {n: ms for n, ms in WINDOW_MS.items() if ms >= ITEMS_FROM_MS})


def _fitting(span_ms: int, sizes: dict[str, int]) -> str:
    """The smallest of ``sizes`` that splits ``span_ms`` into at most MAX_BUCKETS windows (else the largest)."""
    for name, ms in sizes.items():
        if span_ms / ms <= MAX_BUCKETS:
            return name
    return list(sizes)[-1]


def all_documents(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Pulse aggregate document as (id, source), across all families."""
    for family in FAMILIES:
        name = alias(family, prefix)
        if not es.indices.exists_alias(name=name):
            continue
        for hit in helpers.scan(es, index=name, query={"query": {"match_all": {}}}, size=2000):
            yield hit["_id"], hit["_source"]


def _terms(**values: str | None) -> list[dict[str, Any]]:
    return [{"term": {field: value}} for field, value in values.items() if value is not None]


def _scan(es: Elasticsearch, index: str, filters: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if not es.indices.exists_alias(name=index):
        return
    for hit in helpers.scan(es, index=index, query={"query": {"bool": {"filter": filters}}}, size=5000):
        yield hit["_source"]


def _empty_bucket() -> dict[str, Any]:
    return {"events": 0, "corrected": 0, "counts": {}, "errors": 0, "purchases": 0, "revenue_cents": 0,
            "min_cents": None, "max_cents": None, "unique_users": 0, "funnel": dict.fromkeys(STEPS, 0),
            "sketches": {name: MergedSketch() for name in SKETCHED}}


def _merge(m: dict[str, Any], d: dict[str, Any]) -> None:
    """Fold one partial (a window summary, item or category breakdown) into a merged bucket."""
    counts = d.get("counts", {})
    events = d.get("events", sum(counts.values()))
    m["events"] += events
    if "revision" in d:  # a revision of the window: late events counted as corrections
        m["corrected"] += events
    m["errors"] += d.get("errors", 0)
    m["purchases"] += d["purchases"]
    m["revenue_cents"] += d["revenue_cents"]
    m["unique_users"] += d.get("unique_users") or 0  # None: a window counting users only approximately
    for k, v in counts.items():
        m["counts"][k] = m["counts"].get(k, 0) + v
    for k, v in d.get("funnel", {}).items():
        m["funnel"][k] = m["funnel"].get(k, 0) + v
    for name, sketch in m["sketches"].items():
        sketch.add(d.get(sketch_field(name)))
    for name, fold in (("min_cents", min), ("max_cents", max)):
        if d.get(name) is not None:
            m[name] = d[name] if m[name] is None else fold(m[name], d[name])


def _row_terms(f: Filters) -> list[dict[str, Any]]:
    """The item and category filters, on the nested rows of packed item documents."""
    return _terms(**{"items.item_id": f.item_id, "items.category": f.category})


def _item_rows(f: Filters) -> dict[str, Any]:
    """Packed item documents holding a row of the filtered item and/or category (``inner_hits``: those rows)."""
    return {"nested": {"path": "items", "query": {"bool": {"filter": _row_terms(f)}}, "inner_hits": {"size": 100}}}


def _dim_partials(es: Elasticsearch, index: str, clauses: list[dict[str, Any]], dim: str, value: str,
                  out: dict[int, dict[str, Any]]) -> None:
    """Merge the row of one dimension's value from the breakdown documents ``clauses`` select: found by the
    value's keyword, the row picked from the stored ``breakdown``; an older version's documents hold it as a
    nested row (``inner_hits``)."""
    if not es.indices.exists_alias(name=index):
        return
    row = {"bool": {"filter": _terms(**{"rows.dim": dim, "rows.value": value})}}
    nested = {"nested": {"path": "rows", "query": row, "inner_hits": {"size": 1}, "ignore_unmapped": True}}
    query = {"query": {"bool": {"filter": clauses, "minimum_should_match": 1, "should": [
        {"term": {f"values.{dim}": value}}, nested]}}, "_source": ["start", "breakdown"]}
    for hit in helpers.scan(es, index=index, query=query, size=500):
        bucket = out.setdefault(hit["_source"]["start"], _empty_bucket())
        rows = hit["_source"].get("breakdown")
        if rows is None:
            rows = [row["_source"] for row in hit.get("inner_hits", {}).get("rows", {}).get("hits", {}).get("hits", [])]
        for row in rows:
            if row["dim"] == dim and row["value"] == value:
                _merge(bucket, row)


def _nested_partials(es: Elasticsearch, index: str, clauses: list[dict[str, Any]], path: str,
                     out: dict[int, dict[str, Any]]) -> None:
    """Merge the matching nested rows (``inner_hits`` of ``path``) of the documents ``clauses`` select."""
    if not es.indices.exists_alias(name=index):
        return
    query = {"query": {"bool": {"filter": clauses}}, "_source": ["start"]}
    for hit in helpers.scan(es, index=index, query=query, size=1000):
        bucket = out.setdefault(hit["_source"]["start"], _empty_bucket())
        for row in hit["inner_hits"][path]["hits"]["hits"]:
            _merge(bucket, row["_source"])


def window_buckets(es: Elasticsearch, f: Filters, window: str | None = None,
                   prefix: str = DEFAULT_PREFIX) -> dict[int, dict[str, Any]]:
    """Merged partials per window start in [start, end): from summaries, item rows or breakdown rows. Under a
    dimension filter, what the breakdowns do not hold (distinct users, the funnel; errors except by status) is
    None."""
    window = window or f.window()
    kind = {"windows": "window", "items": "window_items", "dims": "window_dims"}[f.source]
    clauses = [{"term": {"kind": kind}}, {"term": {"window": window}},
               {"range": {"start": {"gte": f.start_ms, "lt": f.end_ms}}}]
    out: dict[int, dict[str, Any]] = {}
    index = alias("windows", prefix)
    if f.source == "items":
        _nested_partials(es, index_for("window_items", prefix), [*clauses, _item_rows(f)], "items", out)
    elif f.source == "dims" and f.dimension:
        dim, value = f.dimension
        _dim_partials(es, index, clauses, dim, value, out)
        for m in out.values():
            m["unique_users"] = m["funnel"] = None
            m["errors"] = (m["events"] if value != "ok" else 0) if dim == "status" else None
    elif f.source == "windows":
        for d in _scan(es, index, clauses):
            _merge(out.setdefault(d["start"], _empty_bucket()), d)
        if WINDOW_MS[window] > EXACT_USERS_UP_TO_MS:  # distinct users from the merged HyperLogLogs
            users: dict[int, MergedUsers] = {}
            for d in _scan(es, index, [{"term": {"kind": "window_users"}}, *clauses[1:]]):
                users.setdefault(d["start"], MergedUsers()).add(d.get(USERS_SKETCH))
            for start, m in out.items():
                m["unique_users"] = users[start].estimate() if start in users else 0
    for m in out.values():
        m["avg_cents"] = m["revenue_cents"] / m["purchases"] if m["purchases"] else None
    return out


def user_buckets(es: Elasticsearch, f: Filters, prefix: str = DEFAULT_PREFIX) -> dict[int, dict[str, Any]]:
    """The user's hours that overlap [start, end), in the bucket shape, from their own document."""
    try:
        doc = es.get(index=alias("users", prefix), id=f"user:{f.user_id}")["_source"]
    except NotFoundError:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for hour in doc.get("hours", []):
        if hour["start"] + WINDOW_MS["1h"] > f.start_ms and hour["start"] < f.end_ms:
            m = out[hour["start"]] = _empty_bucket() | {"funnel": None}
            _merge(m, hour)
            m["errors"] = m["unique_users"] = None  # one user's hours hold counts and revenue only
    for m in out.values():
        m["avg_cents"] = m["revenue_cents"] / m["purchases"] if m["purchases"] else None
    return out


def top_items(es: Elasticsearch, f: Filters, by: str = "view", size: int = 10,
              prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]] | None:
    """Top-N items by one event type's count over the range: Σ partials per item, then rank (exact). None under
    a dimension the item rows do not carry (only their category) and for a user."""
    if f.source == "user" or set(f.dimensions()) - {"category"}:
        return None
    query = {"bool": {"filter": [{"term": {"kind": "window_items"}}, {"term": {"window": f.item_window()}},
                                 {"range": {"start": {"gte": f.start_ms, "lt": f.end_ms}}}]}}
    rows = _row_terms(f)
    index = index_for("window_items", prefix)
    if not es.indices.exists_alias(name=index):
        return []
    resp = es.search(index=index, size=0, query=query, aggs={"rows": {
        "nested": {"path": "items"}, "aggs": {"match": {"filter": {"bool": {"filter": rows}}, "aggs": {
            "items": {"terms": {"field": "items.item_id", "size": size, "order": [{"n": "desc"}, {"_key": "asc"}],
                                "shard_size": max(size * 20, 200)},
                      "aggs": {"n": {"sum": {"field": f"items.counts.{by}"}},
                               "revenue": {"sum": {"field": "items.revenue_cents"}},
                               "category": {"terms": {"field": "items.category", "size": 1}}}}}}}}})
    out = []
    for b in resp["aggregations"]["rows"]["match"]["items"]["buckets"]:
        if b["n"]["value"] <= 0:
            continue
        cats = b["category"]["buckets"]
        out.append({"item_id": b["key"], "count": int(b["n"]["value"]), "revenue_cents": int(b["revenue"]["value"]),
                    "category": cats[0]["key"] if cats else None})
    return out


def pipeline_health(es: Elasticsearch, prefix: str = DEFAULT_PREFIX, now_ms: int | None = None) -> dict[str, Any]:
    """Freshness (age of the newest aggregate), lag, and the record accounting summed over partitions."""
    now_ms = now_ms or int(time.time() * 1000)
    totals = dict.fromkeys(PARTITION_COUNTERS, 0)
    newest_flush = newest_event = None
    partitions = 0
    for d in _scan(es, alias("partitions", prefix), [{"term": {"kind": "partition"}}]):
        partitions += 1
        for k in totals:
            totals[k] += d.get(k, 0)
        newest_flush = max(newest_flush or 0, d["flushed_at"])
        newest_event = max(newest_event or 0, d["max_event_ts"] or 0) or None
    beat, verified = _heartbeat(es, prefix, "store:"), _heartbeat(es, prefix, "verify:")
    return {"partitions": partitions, **totals,
            "newest_flush_at": newest_flush, "newest_event_ts": newest_event,
            "freshness_s": (now_ms - newest_flush) / 1000 if newest_flush else None,
            "aggregator_lag": beat.get("aggregator_lag"), "aggregator_lag_s": beat.get("aggregator_lag_s"),
            "store_lag": beat.get("store_lag"),
            "store_dead_lettered": beat.get("dead_lettered"), "heartbeat_at": beat.get("at"),
            # `pulse verify --follow`: every window final up to here equals the recompute, or the first difference
            "verified_up_to": verified.get("checked_up_to"), "verify_differences": verified.get("differences"),
            "verify_first_difference": verified.get("first_difference"), "verify_at": verified.get("at")}


def _heartbeat(es: Elasticsearch, prefix: str, component: str) -> dict[str, Any]:
    """The newest heartbeat of the components named ``component``… (empty: none)."""
    if not es.indices.exists(index=heartbeat_index(prefix)):
        return {}
    hits = es.search(index=heartbeat_index(prefix), size=1, query={"prefix": {"component": component}},
                     sort=[{"at": "desc"}])["hits"]["hits"]
    return hits[0]["_source"] if hits else {}


def overview(es: Elasticsearch, f: Filters, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """Everything the dashboard shows for one filter: KPIs, series per event type, revenue, errors, funnel."""
    window = f.window()
    buckets = user_buckets(es, f, prefix) if f.source == "user" else window_buckets(es, f, window, prefix)
    starts = sorted(buckets)
    types = sorted({t for b in buckets.values() for t in b["counts"]}, key=lambda t: (t not in STEPS, t))
    if f.event_type:
        types = [f.event_type]
    total = _empty_bucket() | {"funnel": dict.fromkeys(STEPS, 0) if f.source == "windows" else None}
    for start in starts:
        b = buckets[start]
        for name, sketch in total["sketches"].items():
            sketch.merge(b["sketches"][name])
        view = b if not f.event_type else _only_type(b, f.event_type)
        for key in ("events", "errors", "purchases", "revenue_cents"):
            total[key] += view[key] or 0
        if total["funnel"] is not None:
            for k in STEPS:
                total["funnel"][k] += b["funnel"][k]
    # rates over the span the data covers: from the first window with events (not the range's start, which may
    # lie before the pipeline ran) to now or the range's end
    now_ms = int(time.time() * 1000)
    first = next((s for s in starts if buckets[s]["events"]), None)
    lo, hi = f.start_ms, f.end_ms
    if f.source == "user":  # a user's series covers the whole hours the range touches
        hour = WINDOW_MS["1h"]
        lo, hi = lo // hour * hour, -(-hi // hour) * hour
    begin = lo if first is None else max(lo, first)
    span_s = max(1.0, (min(hi, now_ms) - begin) / 1000)
    latest = buckets[starts[-1]] if starts else None
    by_status = f.dimension is not None and f.dimension[0] == "status"
    errors_known = (f.source == "windows" or by_status) and not f.event_type
    funnel = total["funnel"]
    return {
        "source": f.source, "window": window, "window_ms": WINDOW_MS[window],
        "filters": asdict(f),
        "kpis": {
            "events": total["events"],
            "events_per_s": total["events"] / span_s,
            "rate_span_s": span_s,
            "revenue_cents": total["revenue_cents"],
            "revenue_per_min": total["revenue_cents"] / 100 / (span_s / 60),
            "purchases": total["purchases"],
            "active_users": latest["unique_users"] if latest and f.source == "windows" else None,
            "conversion_rate": funnel["purchase"] / funnel["view"] if funnel and funnel["view"] else None,
            "error_rate": total["errors"] / total["events"] if errors_known and total["events"] else None,
        },
        "funnel": funnel,
        # the windows late events revised, newest first: "+N late events"
        "revised": [{"start": s, "corrected": buckets[s]["corrected"]} for s in reversed(starts)
                    if buckets[s]["corrected"]][:REVISED_SHOWN],
        # of ok purchases over the range, in cents; only window summaries carry the sketches
        "quantiles": {name: sketch.quantiles() for name, sketch in total["sketches"].items()}
        if f.source == "windows" and f.event_type in (None, "purchase") else None,
        "series": {
            "t": starts,
            "types": {t: [buckets[s]["counts"].get(t, 0) for s in starts] for t in types},
            "revenue": [buckets[s]["revenue_cents"] / 100 for s in starts],
            "errors": [buckets[s]["errors"] for s in starts] if errors_known else None,
            # of the events, those counted late (corrections): only window summaries have revisions
            "corrected": [buckets[s]["corrected"] for s in starts] if f.source == "windows" else None,
            # the last window is still open: its numbers are partial, not a drop
            "partial": bool(starts) and starts[-1] + WINDOW_MS[window] > now_ms,
        },
    }


REVISED_SHOWN = 20
"""The revised windows an overview lists."""


def revisions_of(es: Elasticsearch, window: str, start: int, prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """One window's revisions, oldest first: when each flush counted late events into it, in which partition, and
    how many (what they add to the window's numbers)."""
    clauses = [{"term": {"kind": "window"}}, {"term": {"window": window}}, {"term": {"start": start}},
               {"exists": {"field": "revision"}}]
    out = [{name: d.get(name) for name in ("partition", "revision", "revised_at", "events", "purchases",
                                            "revenue_cents", "unique_users")}
           for d in _scan(es, alias("windows", prefix), clauses)]
    return sorted(out, key=lambda r: (r["revised_at"] or 0, r["partition"], r["revision"]))


def _only_type(b: dict[str, Any], event_type: str) -> dict[str, Any]:
    n = b["counts"].get(event_type, 0)
    paid = event_type == "purchase"
    return {"events": n, "errors": 0, "purchases": b["purchases"] if paid else 0,
            "revenue_cents": b["revenue_cents"] if paid else 0}


def item_detail(es: Elasticsearch, item_id: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any] | None:
    """An item's current state, merged over partitions (None if Pulse never saw it)."""
    merged: dict[str, Any] | None = None
    index = alias("items", prefix)
    if not es.indices.exists_alias(name=index):
        return None
    query = {"query": {"bool": {"filter": [{"term": {"kind": "items"}}, _item_rows(Filters(0, 0, item_id=item_id))]}},
             "_source": False}
    for hit in helpers.scan(es, index=index, query=query, size=100):
        for row in hit["inner_hits"]["items"]["hits"]["hits"]:
            d = row["_source"]
            if merged is None:
                merged = {"item_id": item_id, "category": d["category"], "counts": {}, "revenue_cents": 0,
                          "purchases": 0, "partitions": 0}
            merged["partitions"] += 1
            merged["revenue_cents"] += d["revenue_cents"]
            merged["purchases"] += d["purchases"]
            for k, v in d["counts"].items():
                merged["counts"][k] = merged["counts"].get(k, 0) + v
    if merged is not None:
        views = merged["counts"].get("view", 0)
        merged["conversion_rate"] = merged["counts"].get("purchase", 0) / views if views else None
    return merged


def user_detail(es: Elasticsearch, user_id: str, limit: int = 200,
                prefix: str = DEFAULT_PREFIX) -> dict[str, Any] | None:
    """A user's current state and the newest raw events of their timeline."""
    try:
        state = es.get(index=alias("users", prefix), id=f"user:{user_id}")["_source"]
    except NotFoundError:
        state = None
    timeline: list[dict[str, Any]] = []
    if es.indices.exists_alias(name=alias("events", prefix)):
        hits = es.search(index=alias("events", prefix), size=limit, query={"term": {"user_id": user_id}},
                         sort=[{"ts": "desc"}, {"event_id": "asc"}])["hits"]["hits"]
        timeline = [h["_source"] for h in hits]
    if state is None and not timeline:
        return None
    return {"user_id": user_id, "state": state, "timeline": timeline}


def categories(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Known categories (for the filter list)."""
    if not es.indices.exists_alias(name=alias("items", prefix)):
        return []
    resp = es.search(index=alias("items", prefix), size=0, query={"term": {"kind": "items"}}, aggs={"rows": {
        "nested": {"path": "items"}, "aggs": {
            "c": {"terms": {"field": "items.category", "size": 200, "order": {"_key": "asc"}}}}}})
    return [b["key"] for b in resp["aggregations"]["rows"]["c"]["buckets"]]


def dimension_values(es: Elasticsearch, prefix: str = DEFAULT_PREFIX, size: int = 200) -> dict[str, list[str]]:
    """The values each dimension has taken in the breakdowns (for the filter lists), up to ``size`` each."""
    out: dict[str, list[str]] = {dim: [] for dim in DIMENSIONS}
    if not es.indices.exists_alias(name=alias("windows", prefix)):
        return out
    resp = es.search(index=alias("windows", prefix), size=0, query={"term": {"kind": "window_dims"}}, aggs={
        dim: {"terms": {"field": f"values.{dim}", "size": size, "order": {"_key": "asc"}}} for dim in DIMENSIONS})
    for dim in DIMENSIONS:
        out[dim] = [v["key"] for v in resp["aggregations"][dim]["buckets"]]
    return out
