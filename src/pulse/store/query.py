"""The one query module: exact reads over Pulse's documents, merging per-partition partials.

Used by `pulse verify`, the tests and (later) the dashboard. Filter values reach Elasticsearch only inside
structured ``term``/``terms``/``range`` clauses, never as query strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pulse.store.indices import DEFAULT_PREFIX, FAMILIES, alias


def all_documents(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Pulse document as (id, source), across all families."""
    for family in FAMILIES:
        name = alias(family, prefix)
        if not es.indices.exists_alias(name=name):
            continue
        for hit in helpers.scan(es, index=name, query={"query": {"match_all": {}}}, size=2000):
            yield hit["_id"], hit["_source"]


def _filters(window: str | None = None, start_from: int | None = None, start_to: int | None = None,
             **terms: str | None) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = []
    if window is not None:
        clauses.append({"term": {"window": window}})
    if start_from is not None or start_to is not None:
        rng: dict[str, int] = {}
        if start_from is not None:
            rng["gte"] = start_from
        if start_to is not None:
            rng["lt"] = start_to
        clauses.append({"range": {"start": rng}})
    clauses.extend({"term": {field: value}} for field, value in terms.items() if value is not None)
    return clauses


def window_totals(es: Elasticsearch, window: str, start_from: int | None = None, start_to: int | None = None,
                  prefix: str = DEFAULT_PREFIX) -> dict[int, dict[str, Any]]:
    """Merged window summaries per window start: Σcounts, Σrevenue, min/max fold, avg, Σunique users, funnel."""
    out: dict[int, dict[str, Any]] = {}
    query = {"bool": {"filter": [{"term": {"kind": "window"}}, *_filters(window, start_from, start_to)]}}
    for hit in helpers.scan(es, index=alias("windows", prefix), query={"query": query}, size=2000):
        d = hit["_source"]
        m = out.setdefault(d["start"], {"events": 0, "counts": {}, "errors": 0, "purchases": 0, "revenue_cents": 0,
                                        "min_cents": None, "max_cents": None, "unique_users": 0, "funnel": {}})
        m["events"] += d["events"]
        m["errors"] += d["errors"]
        m["purchases"] += d["purchases"]
        m["revenue_cents"] += d["revenue_cents"]
        m["unique_users"] += d["unique_users"]
        for name in ("counts", "funnel"):
            for k, v in d[name].items():
                m[name][k] = m[name].get(k, 0) + v
        for name, fold in (("min_cents", min), ("max_cents", max)):
            if d[name] is not None:
                m[name] = d[name] if m[name] is None else fold(m[name], d[name])
    for m in out.values():
        m["avg_cents"] = m["revenue_cents"] / m["purchases"] if m["purchases"] else None
    return out


def top_items(es: Elasticsearch, window: str, start_from: int, start_to: int, by: str = "view", size: int = 10,
              category: str | None = None, prefix: str = DEFAULT_PREFIX) -> list[tuple[str, int]]:
    """Top-N items by the summed count of one event type over a time range (terms aggregation on partials)."""
    query = {"bool": {"filter": [{"term": {"kind": "window_item"}},
                                 *_filters(window, start_from, start_to, category=category)]}}
    field = f"counts.{by}"
    resp = es.search(index=alias("windows", prefix), size=0, query=query, aggs={
        "items": {"terms": {"field": "item_id", "size": size, "order": {"n": "desc"}},
                  "aggs": {"n": {"sum": {"field": field}}}}})
    return [(b["key"], int(b["n"]["value"])) for b in resp["aggregations"]["items"]["buckets"]]
