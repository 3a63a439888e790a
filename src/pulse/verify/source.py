"""Where `pulse verify` reads the input from: the Kafka topic itself (a partition at a time, streamed), or a
generator ledger (whole, for small inputs); and what the aggregator group recorded beside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Message

from pulse.aggregate._core import SOURCE_PARTITION_HEADER
from pulse.aggregate.decisions import Decision as RecordedDecision
from pulse.aggregate.decisions import read_decisions
from pulse.aggregate.repartition import Origin, read_forwarded, watermark_of
from pulse.generate.ledger import read_ledger
from pulse.kafkaio import (
    admin_client,
    end_offsets,
    offsets_at,
    read_batches,
    read_messages,
    read_range,
    reader,
    watermarks,
)
from pulse.topics import partition_count, repartition_topic, topic_exists
from pulse.verify.lookahead import Entry, Lookahead, index
from pulse.verify.order import Decision, Decisions, Floor, Forward, Marker, Stall, Take, Taken
from pulse.verify.walk import Row


def input_span(bootstrap: str, topic: str, from_ms: int | None = None,
               to_ms: int | None = None) -> dict[int, tuple[int, int]]:
    """Per partition of the input, the offsets to verify: from the first record at or after ``from_ms`` (if
    given; else from the beginning) up to the first at or after ``to_ms`` (if given; else the end)."""
    consumer = reader(bootstrap)
    try:
        parts = list(range(partition_count(bootstrap, topic)))
        ends = {p: watermarks(consumer, topic, p) for p in parts}
        starts = offsets_at(consumer, topic, parts, from_ms) if from_ms is not None else {p: ends[p][0] for p in parts}
        stops = offsets_at(consumer, topic, parts, to_ms) if to_ms is not None else {p: ends[p][1] for p in parts}
    finally:
        consumer.close()
    return {p: (max(starts[p], ends[p][0]), max(stops[p], starts[p], ends[p][0])) for p in parts}


def input_rows(bootstrap: str, topic: str, partition: int, start: int, end: int | None = None) -> Iterator[Row]:
    """The committed records of one input partition from ``start`` (up to ``end``), in offset order."""
    for offset, _key, value, ts in read_range(bootstrap, topic, partition, start, end):
        yield offset, value, ts


def input_batches(bootstrap: str, topic: str, partition: int, start: int,
                  end: int | None = None) -> Iterator[list[Message]]:
    """:func:`input_rows` as the consumer fetched them: lists of messages (for the native walk)."""
    return read_batches(bootstrap, topic, partition, start, end)


def input_end(bootstrap: str, topic: str, partition: int) -> int:
    """Where a read_committed reader of the partition stops now (its last stable offset): every record before it is
    committed or aborted, and a read that ran out of records has passed any transaction markers up to it."""
    return end_offsets(admin_client(bootstrap), topic, [partition], committed=True)[partition]


def topic_rows(bootstrap: str, topic: str) -> list[tuple[int, int, bytes | None, int]]:
    """Every committed record of the input topic as (partition, offset, value, timestamp), held in memory (for
    the in-memory recompute: tests and small inputs)."""
    return [(p, *row) for p, (start, _) in input_span(bootstrap, topic).items()
            for row in input_rows(bootstrap, topic, p, start)]


def ledger_rows(path: Path) -> tuple[list[tuple[int, int, bytes | None, int]], str, int]:
    """The delivered records of a generator ledger, and the topic and partition count it wrote to."""
    ledger = read_ledger(path)
    rows = [(r.partition, r.offset, r.value, r.record_ts) for r in ledger]
    return rows, str(ledger.header["topic"]), int(ledger.header["partitions"])


def recorded_decisions(bootstrap: str, group: str, topic: str) -> Decisions:
    """The aggregator group's timing decisions about ``topic`` as the reference takes them."""
    out: Decisions = {}
    for p, ds in read_decisions(bootstrap, group, topic).items():
        out[p] = [mine for mine in map(as_decision, ds) if mine is not None]
    return out


def as_decision(d: RecordedDecision) -> Decision | None:
    """A recorded decision as the reference takes it (None: one that decides nothing)."""
    if d.taken_until is not None:
        return Take(d.offset, d.taken_until)
    if d.stalled is not None:
        return Stall(d.offset, d.stalled)
    if d.floor is not None or d.idle:
        return Floor(d.offset, d.floor, d.idle)
    return None


def repartitioned(bootstrap: str, group: str, partition: int) -> Iterator[Taken]:
    """The group's repartition topic records for owner ``partition``, in order: each forwarded record (with its
    value) or a source's watermark."""
    name = repartition_topic(group)
    if not topic_exists(bootstrap, name) or partition >= partition_count(bootstrap, name):
        return
    for offset, origin, value in read_forwarded(bootstrap, name, partition):
        yield offset, as_taken(origin, value)


def as_taken(origin: Origin, value: bytes | None) -> Forward | Marker:
    """A repartition topic record: a forwarded record (its value) or a source's watermark (no value)."""
    if origin.watermark is None:
        return Forward(origin.partition, origin.offset, origin.record_ts or 0, value, origin.correction)
    return Marker(origin.partition, origin.offset, origin.watermark, origin.idle)


def repartition_index(bootstrap: str, group: str) -> tuple[list[Taken], dict[int, Lookahead]]:
    """From the group's repartition topic's headers alone: every watermark its partitions sent each other, and
    per owner partition the look-ahead of what it has yet to take."""
    name = repartition_topic(group)
    if not topic_exists(bootstrap, name):
        return [], {}
    marks: list[Taken] = []
    owners: dict[int, Lookahead] = {}
    for p in range(partition_count(bootstrap, name)):
        entries: list[Entry] = []
        for msg in read_messages(bootstrap, name, p, 0):
            headers = msg.headers() or []
            mark = watermark_of(headers)
            value = msg.value()
            if value is not None and len(value) > 1:  # records, not an empty pack
                entries.append((msg.offset(), _sender(headers), None))
            if mark is not None and mark.watermark is not None:
                entries.append((msg.offset(), mark.partition, mark.watermark))
                marks.append((msg.offset(), Marker(mark.partition, mark.offset, mark.watermark, mark.idle)))
        owners[p] = index(entries, entries[-1][0] + 1 if entries else 0)
    return marks, owners


def _sender(headers: list[tuple[str, bytes]]) -> int:
    return next(int(raw) for name, raw in headers if name == SOURCE_PARTITION_HEADER)


def forwarded_records(bootstrap: str, group: str) -> dict[int, list[Taken]]:
    """Every record of the group's repartition topic, by owner (for the in-memory recompute)."""
    name = repartition_topic(group)
    if not topic_exists(bootstrap, name):
        return {}
    return {p: list(repartitioned(bootstrap, group, p)) for p in range(partition_count(bootstrap, name))}
