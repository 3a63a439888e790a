"""Helpers for aggregator tests: read what the engine committed, and compute what it should be."""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from pulse.aggregate.restore import read_range
from pulse.generate.ledger import Ledger
from pulse.verify.reference import Expected, recompute


def read_latest_docs(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    """The newest committed document per id in the aggregates topic (later offsets win, within a partition)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    docs: dict[str, dict[str, Any]] = {}
    for p in range(partitions):
        for _, key, value, _ in read_range(bootstrap, topic, p, 0):
            if key is not None and value is not None:
                docs[key.decode()] = orjson.loads(value)
    return docs


def expected_from_ledger(ledger: Ledger, sizes: tuple[int, ...] = (10_000, 60_000, 3_600_000),
                         grace_ms: int = 30_000, horizon_ms: int = 30_000) -> Expected:
    return recompute(((r.partition, r.offset, r.value, r.send_ms) for r in ledger), sizes, grace_ms, horizon_ms)
