"""The aggregates Pulse publishes: one JSON document per window × dimensions × owning partition, per entity.

Every document is owned by one input partition, has a deterministic id, and carries ``version`` = the
owning partition's input position after the batch that produced it, so a projection (Elasticsearch) can
apply them idempotently with external versioning. Readers merge partials across partitions. The native core
renders them (``native/src/docs.rs``); the kinds and ids are:

- ``window:<size>:<start>:p<p>``: counts per type and status, revenue (sum/min/max in cents), unique users, funnel;
- ``window_items:<size>:<start>:s<k>:p<p>`` (windows from :data:`pulse.aggregate.model.ITEMS_FROM_MS` on): the
  window's item partials of item shard ``k`` as nested ``items`` rows (``item_id``, ``category``, ``counts``,
  ``revenue_cents``, ``purchases``), published on a cadence that grows with the window; the summary says whether
  the window is final;
- ``window_dims:<size>:<start>:p<p>``: the window's exact breakdowns as stored ``breakdown`` rows (``dim`` — one
  of :data:`pulse.aggregate.model.DIMENSIONS` —, ``value``, ``counts``, ``revenue_cents``, ``purchases``) and
  each dimension's values as keywords (``values``): one document per window, not one per value (further pages
  ``window_dims:<size>:<start>:page<k>:p<p>`` only past a few thousand rows);
- ``window_users:<size>:<start>:p<p>`` (windows from :data:`pulse.aggregate.model.SKETCH_USERS_FROM_MS` on): a
  HyperLogLog of the window's users (``users_hll``), published only when one of its registers rose;
- ``user:<user_id>`` and ``items:s<k>:p<p>`` (current entity state), ``partition:<p>`` (watermark, accounting).

Corrections (events below the watermark, within the correction horizon) never change a window's own documents:
each flush that counted some publishes, per window they fall in, a *revision*: the same kinds of document with
``revision`` = that flush's version and ids ending ``:r<revision>``, holding only the corrections (``unique_users``
null, funnel zero). Readers merge revisions like partitions' partials.

:func:`expand` turns packed documents back into one logical document per row (what `pulse verify` compares).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pulse.aggregate._core import ITEM_SHARDS, item_shard

__all__ = ["ITEM_SHARDS", "Doc", "expand", "item_shard"]

Doc = tuple[str, dict[str, Any]]
_WINDOW_FIELDS = ("window", "window_ms", "start", "end", "partition", "final", "version", "revision", "revised_at")


def expand(docs: Iterable[Doc]) -> Iterator[Doc]:
    """Packed documents as one logical document per row (ids ``window_item:…``, ``window_dim:…`` and
    ``item:…``); every other document as it is."""
    for doc_id, doc in docs:
        kind = doc.get("kind")
        if kind in ("window_dims", "window_items"):
            base = {k: doc[k] for k in _WINDOW_FIELDS if k in doc}  # item shards say nothing of finality
            head = f"{doc['window']}:{doc['start']}"
            tail = f"p{doc['partition']}" + (f":r{doc['revision']}" if "revision" in doc else "")
        if kind == "window_dims":
            for row in doc.get("breakdown", doc.get("rows", [])):  # ``rows``: an older version's nested rows
                yield f"window_dim:{head}:{row['dim']}:{row['value']}:{tail}", {"kind": "window_dim", **base, **row}
        elif kind == "window_items":
            for row in doc["items"]:
                yield f"window_item:{head}:{row['item_id']}:{tail}", {"kind": "window_item", **base, **row}
        elif kind == "items":
            for row in doc["items"]:
                yield (f"item:{row['item_id']}:p{doc['partition']}",
                       {"kind": "item", "partition": doc["partition"], "version": doc["version"], **row})
        else:
            yield doc_id, doc
