"""Where `pulse verify` reads the input from: the Kafka topic itself, or a generator ledger."""

from __future__ import annotations

from pathlib import Path

from pulse.aggregate.decisions import read_decisions
from pulse.aggregate.repartition import read_forwarded
from pulse.generate.ledger import read_ledger
from pulse.kafkaio import offsets_at, read_range, reader
from pulse.topics import partition_count, repartition_topic, topic_exists
from pulse.verify.order import Decisions, Floor, Forward, Forwarded, Marker, Stall, Take

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


def ledger_rows(path: Path) -> tuple[list[Row], str, int]:
    """The delivered records of a generator ledger, and the topic and partition count it wrote to."""
    ledger = read_ledger(path)
    rows = [(r.partition, r.offset, r.value, r.record_ts) for r in ledger]
    return rows, str(ledger.header["topic"]), int(ledger.header["partitions"])


def recorded_decisions(bootstrap: str, group: str, topic: str) -> Decisions:
    """The aggregator group's timing decisions about ``topic`` as the reference takes them."""
    out: Decisions = {}
    for p, ds in read_decisions(bootstrap, group, topic).items():
        out[p] = []
        for d in ds:
            if d.taken_until is not None:
                out[p].append(Take(d.offset, d.taken_until))
            elif d.stalled is not None:
                out[p].append(Stall(d.offset, d.stalled))
            elif d.floor is not None or d.idle:
                out[p].append(Floor(d.offset, d.floor, d.idle))
    return out


def forwarded_records(bootstrap: str, group: str) -> Forwarded:
    """What each record of the group's repartition topic is: where a forwarded record was first read, or a source
    partition's watermark."""
    name = repartition_topic(group)
    if not topic_exists(bootstrap, name):
        return {}
    return {p: [(offset, Forward(origin.partition, origin.offset) if origin.watermark is None
                 else Marker(origin.partition, origin.offset, origin.watermark, origin.idle))
                for offset, origin, _ in read_forwarded(bootstrap, name, p)]
            for p in range(partition_count(bootstrap, name))}
