"""The pipeline heartbeat: one small document per writer saying how fresh and how far behind Pulse is.

The dashboard and Kibana read it to show data freshness (age of the newest aggregate in Elasticsearch) and
consumer lag (input records the aggregator has not committed yet, documents the writer has not written).
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka.admin import AdminClient
from elasticsearch import ApiError, Elasticsearch, TransportError

from pulse.kafkaio import group_lag
from pulse.store.indices import heartbeat_index


class Heartbeat:
    """Throttled heartbeat document for one writer; lag lookups cost a few broker round trips."""

    def __init__(self, admin: AdminClient, component: str, every_s: float = 1.0) -> None:
        self.component, self.every_s = component, every_s
        self._admin = admin
        self._last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def lag(self, group: str, topic: str) -> int | None:
        return group_lag(self._admin, group, topic)

    def publish(self, es: Elasticsearch, prefix: str, **fields: Any) -> str | None:
        """Write the heartbeat document; returns an error text instead of raising (best effort)."""
        self._last = time.monotonic()
        doc = {"component": self.component, "at": int(time.time() * 1000), **fields}
        try:
            es.index(index=heartbeat_index(prefix), id=self.component, document=doc)
        except (ApiError, TransportError) as exc:
            return f"heartbeat: {exc}"[:200]
        return None
