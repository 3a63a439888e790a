"""Upgrading Pulse over indices an older version created: `ensure_indices` adds the new fields to the live
indices (their mappings are strict), so the first breakdown or sketch document is not refused, and their
refresh interval."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from pulse.store.indices import AGGREGATES_REFRESH_S, alias, ensure_indices, template_body


def test_live_indices_take_the_fields_a_newer_version_writes(es_url: str, index_prefix: str) -> None:
    es = Elasticsearch(es_url)
    old = template_body("windows", index_prefix)["template"]
    properties = {k: v for k, v in old["mappings"]["properties"].items()
                  if k not in ("rows", "amount_sketch", "price_sketch")}
    index = f"{alias('windows', index_prefix)}-000001"
    es.indices.create(index=index, settings=old["settings"] | {"refresh_interval": "1s"},
                      aliases={alias("windows", index_prefix): {}},
                      mappings={"dynamic": "strict", "properties": properties})
    doc = {"kind": "window_dims", "window": "10s", "start": 0, "partition": 0, "version": 1,
           "rows": [{"dim": "country", "value": "DE", "counts": {"view": 1}, "revenue_cents": 0, "purchases": 0}],
           "amount_sketch": {"zeros": 0, "bins": [[1, 2]]}}
    with pytest.raises(BadRequestError, match="strict_dynamic_mapping_exception"):
        es.index(index=index, id="d", document=doc)
    ensure_indices(es, index_prefix)
    es.index(index=index, id="d", document=doc, refresh=True)
    assert es.count(index=index, query={"nested": {"path": "rows", "query": {"term": {"rows.value": "DE"}}}})[
        "count"] == 1
    # and the refresh interval of this version (how soon the live page sees an aggregate)
    settings = es.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["refresh_interval"] == f"{round(AGGREGATES_REFRESH_S * 1000)}ms"
