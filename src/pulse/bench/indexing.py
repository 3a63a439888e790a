"""What Elasticsearch spends indexing each part of Pulse's output, from the node's own statistics.

Three measures per part, all primaries: index operations (one per document written), the time the node spent
indexing them, and Lucene documents (``docs.count + docs.deleted``: a nested row is a Lucene document of its own,
and a re-indexed document leaves a deleted one behind until a merge drops it, so the growth is a lower bound).
Parts are Pulse's aggregates (and each aggregate family on its own), its raw-record archive and its heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch

from pulse.store.indices import ARCHIVE_FAMILIES, FAMILIES, heartbeat_index

AGGREGATES, ARCHIVE, HEARTBEATS = "aggregates", "archive", "heartbeats"


@dataclass(frozen=True)
class IndexCost:
    ops: int = 0
    millis: int = 0  # indexing time
    lucene_docs: int = 0

    def __add__(self, other: IndexCost) -> IndexCost:
        return IndexCost(self.ops + other.ops, self.millis + other.millis, self.lucene_docs + other.lucene_docs)

    def __sub__(self, other: IndexCost) -> IndexCost:
        return IndexCost(self.ops - other.ops, self.millis - other.millis, self.lucene_docs - other.lucene_docs)


def index_parts(name: str, prefix: str) -> tuple[str, ...]:
    """The parts of Pulse's output an index counts towards: ``aggregates`` and its family, ``archive``,
    ``heartbeats``, or none (another prefix's index, the metadata index)."""
    if name == heartbeat_index(prefix):
        return (HEARTBEATS,)
    for family in FAMILIES:
        if name.startswith(f"{prefix}-{family}-") or name == f"{prefix}-{family}":
            return AGGREGATES, family
    if any(name.startswith(f"{prefix}-{family}-") for family in ARCHIVE_FAMILIES):
        return (ARCHIVE,)
    return ()


def index_costs(es: Elasticsearch, prefix: str) -> dict[str, IndexCost]:
    """Indexing so far per part (see :func:`index_parts`).

    The indices are refreshed first: ``docs`` counts only what a refresh has made visible, while ``indexing``
    counts every operation, so without it two readings would compare documents from different spans."""
    es.indices.refresh(index=f"{prefix}-*", expand_wildcards="open,hidden", allow_no_indices=True)
    stats = es.indices.stats(index=f"{prefix}-*", metric="indexing,docs", expand_wildcards="all")
    out: dict[str, IndexCost] = {}
    for name, index in stats["indices"].items():
        primaries = index["primaries"]
        docs = primaries.get("docs", {})
        cost = IndexCost(primaries["indexing"]["index_total"], primaries["indexing"]["index_time_in_millis"],
                         docs.get("count", 0) + docs.get("deleted", 0))
        for part in index_parts(name, prefix):
            out[part] = out.get(part, IndexCost()) + cost
    return out


def index_growth(before: dict[str, IndexCost], after: dict[str, IndexCost]) -> dict[str, IndexCost]:
    """What each part added between two readings (a part first seen in ``after`` started from nothing)."""
    return {part: cost - before.get(part, IndexCost()) for part, cost in after.items()}
