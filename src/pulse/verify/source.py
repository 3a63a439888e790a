"""Where `pulse verify` reads the input from: the Kafka topic itself, or a generator ledger."""

from __future__ import annotations

from pathlib import Path

from pulse.generate.ledger import read_ledger
from pulse.kafkaio import read_range
from pulse.topics import partition_count

Row = tuple[int, int, bytes | None, int]


def topic_rows(bootstrap: str, topic: str) -> list[Row]:
    """Every committed record of the input topic as (partition, offset, value, timestamp)."""
    rows: list[Row] = []
    for p in range(partition_count(bootstrap, topic)):
        rows.extend((p, offset, value, ts) for offset, _key, value, ts in read_range(bootstrap, topic, p, 0))
    return rows


def ledger_rows(path: Path) -> list[Row]:
    return [(r.partition, r.offset, r.value, r.send_ms) for r in read_ledger(path)]
