"""Where `pulse verify` reads the input from: the Kafka topic itself, or a generator ledger."""

from __future__ import annotations

from pathlib import Path

from pulse.aggregate.decisions import read_decisions
from pulse.generate.ledger import read_ledger
from pulse.kafkaio import offsets_at, read_range, reader
from pulse.topics import partition_count

Row = tuple[int, int, bytes | None, int]


def topic_rows(bootstrap: str, topic: str, from_ms: int | None = None) -> list[Row]:
    """Every committed record of the input topic (from a record time, if given) as
    (partition, offset, value, timestamp)."""
    parts = list(range(partition_count(bootstrap, topic)))
    starts = dict.fromkeys(parts, 0)
    if from_ms is not None:
        consumer = reader(bootstrap)
        try:
            starts = offsets_at(consumer, topic, parts, from_ms)
        finally:
            consumer.close()
    rows: list[Row] = []
    for p in parts:
        rows.extend((p, offset, value, ts) for offset, _key, value, ts in read_range(bootstrap, topic, p, starts[p]))
    return rows


def ledger_rows(path: Path) -> list[Row]:
    return [(r.partition, r.offset, r.value, r.record_ts) for r in read_ledger(path)]


def recorded_floors(bootstrap: str, group: str, topic: str) -> dict[int, list[tuple[int, int]]]:
    """The aggregator group's wall-clock decisions about ``topic`` as the reference takes them."""
    return {p: [(d.offset, d.floor) for d in ds] for p, ds in read_decisions(bootstrap, group, topic).items()}
