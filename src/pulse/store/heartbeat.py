"""The pipeline heartbeat: one small document per writer saying how fresh and how far behind Pulse is.

The dashboard and Kibana read it to show data freshness (age of the newest aggregate in Elasticsearch) and
consumer lag (input records the aggregator has not committed yet, and how long the oldest of them has waited;
documents the writer has not written).
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer
from elasticsearch import ApiError, Elasticsearch, TransportError

from pulse.kafkaio import group_lag, lag_reader, waiting_seconds
from pulse.store.indices import heartbeat_index


class Heartbeat:
    """Throttled heartbeat document for one writer; lag lookups cost a few broker round trips."""

    def __init__(self, bootstrap: str, component: str, every_s: float = 1.0) -> None:
        self.component, self.every_s = component, every_s
        self._bootstrap = bootstrap
        self._readers: dict[str, Consumer] = {}
        self._last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def _reader(self, group: str) -> Consumer:
        reader = self._readers.get(group)
        if reader is None:
            reader = self._readers[group] = lag_reader(self._bootstrap, group)
        return reader

    def lag(self, group: str, topic: str) -> int | None:
        """Records of ``topic`` the group has not committed."""
        return group_lag(self._reader(group), topic)

    def lag_seconds(self, group: str, topic: str) -> float | None:
        """How long the group's oldest uncommitted record of ``topic`` has waited."""
        waited = waiting_seconds(self._reader(group), topic)
        return None if waited is None else round(waited, 3)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def publish(self, es: Elasticsearch, prefix: str, **fields: Any) -> str | None:
        """Write the heartbeat document; returns an error text instead of raising (best effort)."""
        self._last = time.monotonic()
        doc = {"component": self.component, "at": int(time.time() * 1000), **fields}
        try:
            es.index(index=heartbeat_index(prefix), id=self.component, document=doc)
        except (ApiError, TransportError) as exc:
            return f"heartbeat: {exc}"[:200]
        return None
