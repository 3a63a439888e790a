"""Elasticsearch index templates and aliases for Pulse's documents (no ILM, ingest or scripts needed).

Each document kind lives behind an alias (``pulse-windows``, ``pulse-users``, ``pulse-items``,
``pulse-partitions``) that points at a concrete index (``pulse-windows-000001``), so a replay can build new
indices and swap the alias atomically. Hot and cold apart: the small documents dashboards poll (window
summaries, breakdowns and sketches; partitions) are refreshed as soon as they are written, the heavy ones that
change slowly (item shards of windows and of the item state, users) wait for a longer refresh interval. Mappings
are strict at the top level; the per-type maps (``counts``, ``status``, ``funnel``) take any event type or status
as a long.
"""

from __future__ import annotations

import logging
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch

from pulse.aggregate.model import DIMENSIONS, OUTCOMES, SKETCHED, USERS_SKETCH, sketch_field
from pulse.errors import PulseError

_LOG = logging.getLogger("pulse.store")

DEFAULT_PREFIX = "pulse"
KIND_FAMILY = {"window": "windows", "window_dims": "windows", "window_users": "windows",
               "user": "users",
               "window_items": "items", "items": "items", "partition": "partitions"}
FAMILIES = ("windows", "users", "items", "partitions")
LIVE_FAMILIES = ("windows", "partitions")
"""What dashboards poll: the writer refreshes them as soon as it wrote to them (the others wait for their interval,
`COLD_REFRESH_S`)."""
ARCHIVE_FAMILIES = ("events", "deadletter", "late")
"""Time-based (daily) indices of raw records for drill-down; Pulse deletes them after the retention."""

_COUNTS = {"type": "object", "dynamic": True}
_WINDOW_HEAD = {
    "kind": {"type": "keyword"}, "window": {"type": "keyword"}, "window_ms": {"type": "long"},
    "start": {"type": "date", "format": "epoch_millis"}, "end": {"type": "date", "format": "epoch_millis"},
    "revision": {"type": "long"},  # a revision's (corrections beside the window's own documents)
    "revised_at": {"type": "date", "format": "epoch_millis"},  # the wall clock of the flush that counted them
}
_WINDOW = _WINDOW_HEAD | {
    "final": {"type": "boolean"}, "events": {"type": "long"}, "errors": {"type": "long"},
    "min_cents": {"type": "long"}, "max_cents": {"type": "long"}, "unique_users": {"type": "long"},
    "funnel": _COUNTS, "status": _COUNTS,
}
# Sketches are read whole and merged by the query module: stored, not indexed (their bins are not fields).
_SKETCHES = {field: {"type": "object", "enabled": False}
             for field in (*(sketch_field(name) for name in SKETCHED), USERS_SKETCH)}
_OWNED = {"kind": {"type": "keyword"}, "partition": {"type": "integer"}, "version": {"type": "long"}}
_TOTALS = {"counts": _COUNTS, "revenue_cents": {"type": "long"}, "purchases": {"type": "long"}}
_COMMON = _OWNED | _TOTALS
# Packed item partials: one document per item shard, its items nested so terms aggregations stay exact.
_ITEMS = {"shard": {"type": "integer"}, "items": {"type": "nested", "properties": _TOTALS | {
    "item_id": {"type": "keyword"}, "category": {"type": "keyword"}}}}
# A window's breakdowns: one document per window, its rows stored for readers to pick from (``breakdown``, not
# indexed) and each dimension's values as keywords (``values``) to find the documents holding a value. Documents
# of older versions hold the rows nested (``rows``): still mapped, so that readers find them too.
_DIMS = {"values": {"properties": {dim: {"type": "keyword"} for dim in DIMENSIONS}},
         "breakdown": {"type": "object", "enabled": False},
         "rows": {"type": "nested", "properties": _TOTALS | {"dim": {"type": "keyword"}, "value": {"type": "keyword"}}}}
NESTED_LIMIT = 50_000  # items per packed document (Elasticsearch's default is 10,000)
FIELDS_LIMIT = 5_000  # mapped fields per index (Elasticsearch's default is 1,000)
_PROPERTIES: dict[str, dict[str, Any]] = {
    "windows": _COMMON | _WINDOW | _DIMS | _SKETCHES,
    "users": _COMMON | {"user_id": {"type": "keyword"}, "first_seen": {"type": "date", "format": "epoch_millis"},
                        "last_seen": {"type": "date", "format": "epoch_millis"}, "spent_cents": {"type": "long"},
                        "last_item": {"type": "keyword"},
                        # the user's own hourly series, read with the document (never searched)
                        "hours": {"type": "object", "enabled": False}},
    # the item state's shards and windows' item shards (`window_items`, with the window's head)
    "items": _OWNED | _WINDOW_HEAD | _ITEMS,
    "partitions": _COMMON | {"watermark": {"type": "date", "format": "epoch_millis"},
                             "max_event_ts": {"type": "date", "format": "epoch_millis"},
                             "next_offset": {"type": "long"}, "forwarded": {"type": "long"},
                             **{outcome: {"type": "long"} for outcome in OUTCOMES},
                             "repartition_offset": {"type": "long"},
                             "flushed_at": {"type": "date", "format": "epoch_millis"}},
}
_EVENT = {
    "event_id": {"type": "keyword"}, "event_type": {"type": "keyword"},
    "ts": {"type": "date", "format": "epoch_millis"}, "user_id": {"type": "keyword"},
    "session_id": {"type": "keyword"}, "item_id": {"type": "keyword"}, "category": {"type": "keyword"},
    "price": {"type": "double"}, "quantity": {"type": "integer"}, "amount": {"type": "double"},
    "currency": {"type": "keyword"}, "status": {"type": "keyword"}, "device": {"type": "keyword"},
    "country": {"type": "keyword"}, "schema_version": {"type": "integer"},
    "partition": {"type": "integer"}, "offset": {"type": "long"},
}
_ROUTED = {"reason": {"type": "keyword"}, "detail": {"type": "keyword", "ignore_above": 1024},
           "routed_at": {"type": "date", "format": "epoch_millis"}}
_ARCHIVE_PROPERTIES: dict[str, dict[str, Any]] = {
    "events": _EVENT,
    "late": _EVENT | _ROUTED,
    "deadletter": _ROUTED | {"partition": {"type": "integer"}, "offset": {"type": "long"},
                             "key": {"type": "keyword", "ignore_above": 256},
                             "raw": {"type": "keyword", "index": False, "doc_values": False}},
}
HEARTBEAT_PROPERTIES = {
    "component": {"type": "keyword"}, "at": {"type": "date", "format": "epoch_millis"},
    "group": {"type": "keyword"}, "topic": {"type": "keyword"}, "aggregator_lag": {"type": "long"},
    "aggregator_lag_s": {"type": "double"},
    "store_lag": {"type": "long"}, "newest_flush_at": {"type": "date", "format": "epoch_millis"},
    "newest_event_ts": {"type": "date", "format": "epoch_millis"}, "written": {"type": "long"},
    "stale": {"type": "long"}, "dead_lettered": {"type": "long"}, "retries": {"type": "long"},
    "outage_s": {"type": "double"}, "expired": {"type": "long"}, "archived": {"type": "long"},
    "checked_up_to": {"type": "date", "format": "epoch_millis"}, "checked": {"type": "long"},
    "differences": {"type": "long"}, "first_difference": {"type": "keyword", "ignore_above": 2048},
}
_META = {"topic": {"type": "keyword"}, "topic_id": {"type": "keyword"}, "generation": {"type": "integer"},
         "group": {"type": "keyword"}, "recorded_at": {"type": "date", "format": "epoch_millis"},
         "replayed_from": {"type": "date", "format": "epoch_millis"}}


def alias(family: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-{family}"


AGGREGATES_REFRESH_S = 0.5
"""How soon a written aggregate of `LIVE_FAMILIES` is searchable if the writer's own refresh did not come first."""
COLD_REFRESH_S = 5.0
"""How soon item shards and users are searchable: they are published every few minutes; fewer segments to merge."""


def refresh_s(family: str) -> float:
    return AGGREGATES_REFRESH_S if family in LIVE_FAMILIES else COLD_REFRESH_S
ARCHIVE_REFRESH_S = 1.0
"""The raw archive takes one document per event: Elasticsearch's default refresh, fewer segments to merge."""


def _interval(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _template(family: str, prefix: str, mappings: dict[str, Any], meta: str, refresh_s: float,
              aliases: dict[str, Any] | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": _interval(refresh_s)},
        "mappings": {"dynamic": "strict", **mappings},
    }
    if aliases:
        template["aliases"] = aliases
    return {"index_patterns": [f"{alias(family, prefix)}-*"], "priority": 200, "template": template,
            "_meta": {"pulse": f"{meta}, managed by `pulse setup`"}}


def template_body(family: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """Generations ``<prefix>-<family>-00000N`` of an aggregate family; the per-type maps hold longs."""
    body = _template(family, prefix, {
        "dynamic_templates": [{"counts_as_long": {"path_match": "*.*", "mapping": {"type": "long"}}}],
        "properties": _PROPERTIES[family]}, "index template", refresh_s(family))
    body["template"]["settings"] |= {
        "index.mapping.nested_objects.limit": NESTED_LIMIT,
        # every event type and status is a field (``counts.<type>``): a producer with thousands of them must not
        # get documents refused; names past the limit stay in _source (which readers merge) but are not indexed
        "index.mapping.total_fields.limit": FIELDS_LIMIT,
        "index.mapping.total_fields.ignore_dynamic_beyond_limit": True,
    }
    return body


def archive_template_body(family: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """Daily indices ``<prefix>-<family>-YYYY.MM.DD``, each joining the read alias ``<prefix>-<family>``."""
    return _template(family, prefix, {"properties": _ARCHIVE_PROPERTIES[family]}, "daily archive index template",
                     ARCHIVE_REFRESH_S, aliases={alias(family, prefix): {}})


def heartbeat_index(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-heartbeat"


def meta_index(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-meta"


def _strict(properties: dict[str, Any]) -> dict[str, Any]:
    return {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"dynamic": "strict", "properties": properties}}


def create_generation(es: Elasticsearch, generation: int, prefix: str = DEFAULT_PREFIX,
                      with_alias: bool = False) -> list[str]:
    """Concrete indices of one generation (``<alias>-00000N``) for every aggregate family."""
    made = []
    for family in FAMILIES:
        index = f"{alias(family, prefix)}-{generation:06d}"
        if not es.indices.exists(index=index):
            aliases = {alias(family, prefix): {"is_write_index": True}} if with_alias else None
            if _create(es, index, aliases=aliases):
                made.append(index)
    return made


def _create(es: Elasticsearch, index: str, **body: Any) -> bool:
    """Create ``index``; False if another process (the store, `verify --follow`, the dashboard starting beside
    it) created it first."""
    try:
        es.indices.create(index=index, **body)
    except BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
        return False
    return True


READY_PATIENCE_S = 60.0
"""How long a start waits for Pulse's indices to have their primary shards started."""


def await_ready(es: Elasticsearch, indices: list[str], patience_s: float = READY_PATIENCE_S) -> None:
    """Wait until every one of ``indices`` has its primary shards started. An index another process created a moment
    ago, or one still recovering after Elasticsearch restarted, answers reads with 503
    (no_shard_available_action_exception) until then. A one-line error if that takes longer than ``patience_s``."""
    names = ",".join(indices)
    health = es.options(ignore_status=408).cluster.health(index=names, wait_for_status="yellow", timeout="0s")
    if health.get("timed_out"):
        _LOG.info("waiting up to %.0f s for Pulse's indices to be ready (%s now)", patience_s, health.get("status"))
        health = es.options(request_timeout=patience_s + 10, ignore_status=408).cluster.health(
            index=names, wait_for_status="yellow", timeout=f"{patience_s:.0f}s")
    if health.get("timed_out"):
        missing = [name for name in indices if not es.indices.exists(index=name)]
        if missing:  # health waits for these too, and says only "red"
            raise PulseError(f"{', '.join(missing)} went missing while Pulse started (deleted by hand?): run "
                             "`pulse setup` or start the writer again to create them")
        raise PulseError(f"Pulse's indices ({', '.join(indices)}) are {health.get('status')}, not ready after "
                         f"{patience_s:.0f} s: a primary shard has not started "
                         "(GET _cluster/allocation/explain says why)")


def current_generation(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> int:
    """The generation the aliases point at (0 when Pulse's indices do not exist yet)."""
    name = alias(FAMILIES[0], prefix)
    if not es.indices.exists_alias(name=name):
        return 0
    return max(int(index.rsplit("-", 1)[1]) for index in es.indices.get_alias(name=name))


def ensure_indices(es: Elasticsearch, prefix: str = DEFAULT_PREFIX,
                   ready_patience_s: float = READY_PATIENCE_S) -> list[str]:
    """Create templates (always refreshed), the first generation behind the aliases if missing, and the
    heartbeat and metadata indices, and wait up to ``ready_patience_s`` for all of them to be ready. Returns the
    names of the indices created."""
    for family in FAMILIES:
        es.indices.put_index_template(name=alias(family, prefix), **template_body(family, prefix))
    for family in ARCHIVE_FAMILIES:
        es.indices.put_index_template(name=alias(family, prefix), **archive_template_body(family, prefix))
    # a family an older version did not have gets its index in the current generation
    made = create_generation(es, current_generation(es, prefix) or 1, prefix, with_alias=True)
    own = ((heartbeat_index(prefix), HEARTBEAT_PROPERTIES), (meta_index(prefix), _META))
    for index, properties in own:
        if not es.indices.exists(index=index) and _create(es, index, **_strict(properties)):
            made.append(index)
    await_ready(es, [alias(family, prefix) for family in FAMILIES] + [index for index, _ in own], ready_patience_s)
    upgrade_mappings(es, prefix)
    move_kind(es, "window_items", "windows", prefix)
    for index, properties in own:
        if index not in made:  # an index from an older version: take the fields this one writes
            es.indices.put_mapping(index=index, properties=properties)
    return made


def upgrade_mappings(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> None:
    """Add the fields a newer Pulse writes to the indices the aliases point at, and take its refresh interval (an
    index takes its template's mapping and settings only when created, and the mappings are strict). Only
    additions: Elasticsearch refuses a changed field type with a clear error, which stops setup before any
    document is refused."""
    for family in FAMILIES:
        name = alias(family, prefix)
        if es.indices.exists_alias(name=name):
            for index in es.indices.get_alias(name=name):
                es.indices.put_mapping(index=index, properties=_PROPERTIES[family])
                es.indices.put_settings(index=index, settings={"refresh_interval": _interval(refresh_s(family))})


def move_kind(es: Elasticsearch, kind: str, old_family: str, prefix: str = DEFAULT_PREFIX) -> int:
    """Move the ``kind`` documents an older version wrote to ``old_family``'s indices to the family they belong in
    now (same ids and versions: a newer copy already there wins), then delete them where they were. Returns how
    many were moved."""
    old, new = alias(old_family, prefix), index_for(kind, prefix)
    if old == new or not es.indices.exists_alias(name=old):
        return 0
    es.indices.refresh(index=old)
    moved = 0
    while hits := es.search(index=old, size=500, query={"term": {"kind": kind}})["hits"]["hits"]:
        ops: list[dict[str, Any]] = []
        for hit in hits:
            ops.append({"index": {"_index": new, "_id": hit["_id"], "version": hit["_source"].get("version", 0),
                                  "version_type": "external_gte"}})
            ops.append(hit["_source"])
        # 409 on the copy: the new family holds a newer version; 404 on the delete: already gone
        _bulk_or_fail(es, ops, {409}, f"moving {kind} documents to {new}")
        deletes = [{"delete": {"_index": hit["_index"], "_id": hit["_id"]}} for hit in hits]
        _bulk_or_fail(es, deletes, {404}, f"deleting the moved {kind} documents from {old}")
        moved += len(hits)
    return moved


def _bulk_or_fail(es: Elasticsearch, ops: list[dict[str, Any]], fine: set[int], what: str) -> None:
    for item in es.bulk(operations=ops, refresh=True)["items"]:
        result = next(iter(item.values()))
        if result.get("status", 500) >= 300 and result.get("status") not in fine:
            raise PulseError(f"{what} failed: {result.get('error')}")


def index_for(kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    return alias(KIND_FAMILY[kind], prefix)
