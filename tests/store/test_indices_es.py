"""Upgrading Pulse over indices an older version created: `ensure_indices` adds the new fields to the live
indices (their mappings are strict), so the first breakdown or sketch document is not refused, and their
refresh interval; the breakdowns an older version wrote (nested rows) are still read."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from pulse.store.indices import AGGREGATES_REFRESH_S, alias, ensure_indices, move_kind, template_body
from pulse.store.query import Filters, top_items, window_buckets


def test_live_indices_take_the_fields_a_newer_version_writes(es_url: str, index_prefix: str) -> None:
    es = Elasticsearch(es_url)
    old = template_body("windows", index_prefix)["template"]
    properties = {k: v for k, v in old["mappings"]["properties"].items()
                  if k not in ("values", "breakdown", "amount_sketch", "price_sketch")}
    index = f"{alias('windows', index_prefix)}-000001"
    es.indices.create(index=index, settings=old["settings"] | {"refresh_interval": "1s"},
                      aliases={alias("windows", index_prefix): {}},
                      mappings={"dynamic": "strict", "properties": properties})
    row = {"dim": "country", "value": "DE", "counts": {"view": 1}, "revenue_cents": 0, "purchases": 0}
    base = {"kind": "window_dims", "window": "10s", "window_ms": 10_000, "start": 0, "end": 10_000, "version": 1}
    older = base | {"partition": 0, "rows": [row]}  # what the older version wrote: nested rows
    newer = base | {"partition": 1, "values": {"country": ["DE"]}, "breakdown": [row],
                    "amount_sketch": {"zeros": 0, "bins": [[1, 2]]}}
    es.index(index=index, id="window_dims:10s:0:p0", document=older)
    with pytest.raises(BadRequestError, match="strict_dynamic_mapping_exception"):
        es.index(index=index, id="window_dims:10s:0:p1", document=newer)
    ensure_indices(es, index_prefix)
    es.index(index=index, id="window_dims:10s:0:p1", document=newer, refresh=True)
    assert es.count(index=index, query={"term": {"values.country": "DE"}})["count"] == 1
    # the breakdown reads both: the older document's nested row and the newer one's stored row
    buckets = window_buckets(es, Filters(0, 10_000, country="DE"), "10s", index_prefix)
    assert buckets[0]["events"] == 2 and buckets[0]["counts"] == {"view": 2}
    # and the refresh interval of this version (how soon the live page sees an aggregate)
    settings = es.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["refresh_interval"] == f"{round(AGGREGATES_REFRESH_S * 1000)}ms"


def test_item_shards_an_older_version_kept_with_the_summaries_move_to_the_items_index(es_url: str,
                                                                                      index_prefix: str) -> None:
    es = Elasticsearch(es_url)
    windows = template_body("windows", index_prefix)["template"]
    items_mapping = template_body("items", index_prefix)["template"]["mappings"]["properties"]
    older = windows["mappings"]["properties"] | {"shard": items_mapping["shard"], "items": items_mapping["items"]}
    index = f"{alias('windows', index_prefix)}-000001"
    es.indices.create(index=index, settings=windows["settings"], aliases={alias("windows", index_prefix): {}},
                      mappings={"dynamic": "strict", "properties": older})
    head = {"window": "1m", "window_ms": 60_000, "start": 0, "end": 60_000, "partition": 0, "version": 3}
    row = {"item_id": "i1", "category": "books", "counts": {"view": 4}, "revenue_cents": 0, "purchases": 0}
    es.index(index=index, id="window_items:1m:0:s1:p0", document=head | {"kind": "window_items", "shard": 1,
                                                                        "items": [row]})
    es.index(index=index, id="window:1m:0:p0", document=head | {"kind": "window", "events": 4}, refresh=True)
    ensure_indices(es, index_prefix)
    assert es.count(index=alias("windows", index_prefix), query={"term": {"kind": "window_items"}})["count"] == 0
    assert es.count(index=alias("windows", index_prefix))["count"] == 1  # the summary stays
    moved = es.get(index=alias("items", index_prefix), id="window_items:1m:0:s1:p0")
    assert moved["_version"] == 3 and moved["_source"]["items"] == [row]
    top = top_items(es, Filters(0, 60_000), prefix=index_prefix)
    assert top == [{"item_id": "i1", "count": 4, "revenue_cents": 0, "category": "books"}]
    assert move_kind(es, "window_items", "windows", index_prefix) == 0  # once
