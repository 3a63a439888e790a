"""Elasticsearch index templates and aliases for Pulse's documents (no ILM, ingest or scripts needed).

Each document kind lives behind an alias (``pulse-windows``, ``pulse-users``, ``pulse-items``,
``pulse-partitions``) that points at a concrete index (``pulse-windows-000001``), so a replay can build new
indices and swap the alias atomically. Mappings are strict at the top level; the per-type maps (``counts``,
``status``, ``funnel``) take any event type or status as a long.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

DEFAULT_PREFIX = "pulse"
KIND_FAMILY = {"window": "windows", "window_item": "windows", "window_category": "windows", "user": "users",
               "item": "items", "partition": "partitions"}
FAMILIES = ("windows", "users", "items", "partitions")

_COUNTS = {"type": "object", "dynamic": True}
_WINDOW = {
    "kind": {"type": "keyword"}, "window": {"type": "keyword"}, "window_ms": {"type": "long"},
    "start": {"type": "date", "format": "epoch_millis"}, "end": {"type": "date", "format": "epoch_millis"},
    "final": {"type": "boolean"}, "events": {"type": "long"}, "errors": {"type": "long"},
    "min_cents": {"type": "long"}, "max_cents": {"type": "long"}, "unique_users": {"type": "long"},
    "funnel": _COUNTS, "status": _COUNTS, "item_id": {"type": "keyword"}, "category": {"type": "keyword"},
}
_COMMON = {"kind": {"type": "keyword"}, "partition": {"type": "integer"}, "version": {"type": "long"},
           "counts": _COUNTS, "revenue_cents": {"type": "long"}, "purchases": {"type": "long"}}
_PROPERTIES: dict[str, dict[str, Any]] = {
    "windows": _COMMON | _WINDOW,
    "users": _COMMON | {"user_id": {"type": "keyword"}, "first_seen": {"type": "date", "format": "epoch_millis"},
                        "last_seen": {"type": "date", "format": "epoch_millis"}, "spent_cents": {"type": "long"},
                        "last_item": {"type": "keyword"}},
    "items": _COMMON | {"item_id": {"type": "keyword"}, "category": {"type": "keyword"}},
    "partitions": _COMMON | {"watermark": {"type": "date", "format": "epoch_millis"},
                             "max_event_ts": {"type": "date", "format": "epoch_millis"},
                             "next_offset": {"type": "long"}, "accepted": {"type": "long"},
                             "dead_lettered": {"type": "long"}, "late": {"type": "long"},
                             "duplicates": {"type": "long"},
                             "flushed_at": {"type": "date", "format": "epoch_millis"}},
}


def alias(family: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-{family}"


def template_body(family: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    return {
        "index_patterns": [f"{alias(family, prefix)}-*"],
        "priority": 200,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {
                "dynamic": "strict",
                "dynamic_templates": [{"counts_as_long": {"path_match": "*.*", "mapping": {"type": "long"}}}],
                "properties": _PROPERTIES[family],
            },
        },
        "_meta": {"pulse": "index template, managed by `pulse setup`"},
    }


def ensure_indices(es: Elasticsearch, prefix: str = DEFAULT_PREFIX, generation: int = 1) -> list[str]:
    """Create templates (always refreshed), and the first index behind each alias if the alias is missing."""
    made = []
    for family in FAMILIES:
        es.indices.put_index_template(name=alias(family, prefix), **template_body(family, prefix))
        if not es.indices.exists_alias(name=alias(family, prefix)):
            index = f"{alias(family, prefix)}-{generation:06d}"
            es.indices.create(index=index, aliases={alias(family, prefix): {"is_write_index": True}})
            made.append(index)
    return made


def index_for(kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    return alias(KIND_FAMILY[kind], prefix)
