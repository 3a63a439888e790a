"""Reading Pulse's documents back a slice at a time, for `pulse verify`: one partition's windows by the range
their ends fall in, one partition's users and items, and every partition document. Packed documents come back
as one logical document per row (:func:`pulse.aggregate.docs.expand`), so the caller never holds more than the
slice it asked for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pulse.aggregate.docs import expand
from pulse.store.indices import DEFAULT_PREFIX, index_for

Docs = dict[str, dict[str, Any]]
WINDOW_KINDS = ("window", "window_dims", "window_users", "window_items")
ENTITY_KINDS = ("user", "items")


def _indices(es: Elasticsearch, kinds: tuple[str, ...], prefix: str) -> str | None:
    names = sorted({index_for(kind, prefix) for kind in kinds})
    present = [name for name in names if es.indices.exists_alias(name=name)]
    return ",".join(present) or None


def _read(es: Elasticsearch, kinds: tuple[str, ...], prefix: str, filters: list[dict[str, Any]],
          excluded: list[dict[str, Any]] | None = None) -> Docs:
    index = _indices(es, kinds, prefix)
    if index is None:
        return {}
    query = {"query": {"bool": {"filter": [{"terms": {"kind": list(kinds)}}, *filters], "must_not": excluded or []}}}
    hits: Iterator[dict[str, Any]] = helpers.scan(es, index=index, query=query, size=2000)
    return dict(expand((hit["_id"], hit["_source"]) for hit in hits))


def windows_ending(es: Elasticsearch, partition: int, after: int | None, upto: int | None,
                   prefix: str = DEFAULT_PREFIX, starting_from: int | None = None, revisions: bool = False) -> Docs:
    """Partition ``partition``'s window documents (summaries, breakdowns, user sketches, item rows) whose end is
    after ``after`` and at most ``upto`` (None: unbounded), and whose start is at least ``starting_from``: the
    windows' own documents, or (``revisions``) only their revisions."""
    ends = {k: v for k, v in (("gt", after), ("lte", upto)) if v is not None}
    filters: list[dict[str, Any]] = [{"term": {"partition": partition}}]
    if ends:
        filters.append({"range": {"end": ends}})
    if starting_from is not None:
        filters.append({"range": {"start": {"gte": starting_from}}})
    revision = {"exists": {"field": "revision"}}
    if revisions:
        return _read(es, WINDOW_KINDS, prefix, [*filters, revision])
    return _read(es, WINDOW_KINDS, prefix, filters, [revision])


def entities(es: Elasticsearch, partition: int, prefix: str = DEFAULT_PREFIX) -> Docs:
    """Partition ``partition``'s users and items."""
    return _read(es, ENTITY_KINDS, prefix, [{"term": {"partition": partition}}])


def partition_documents(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """Every partition document (the engine's counters per input partition)."""
    return list(_read(es, ("partition",), prefix, []).values())


def refresh_windows(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> None:
    """Make every written window document searchable now: item rows live in an index the writer leaves to its
    (slow) refresh interval, and a follower compares them as soon as they are final."""
    index = _indices(es, WINDOW_KINDS, prefix)
    if index is not None:
        es.indices.refresh(index=index)


def partition_watermarks(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> dict[int, int]:
    """Each partition's watermark as of the aggregator's last published flush: the windows ending at or before it
    were closed by that flush or an earlier one, and everything of theirs published."""
    return {int(d["partition"]): int(d["watermark"]) for d in partition_documents(es, prefix)}


def partitions_holding(es: Elasticsearch, prefix: str = DEFAULT_PREFIX) -> set[int]:
    """The partitions any window, user or item document belongs to."""
    index = _indices(es, WINDOW_KINDS + ENTITY_KINDS, prefix)
    if index is None:
        return set()
    found = es.search(index=index, size=0, aggs={"p": {"terms": {"field": "partition", "size": 10_000}}})
    return {int(b["key"]) for b in found["aggregations"]["p"]["buckets"]}
