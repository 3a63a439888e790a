"""Input not keyed by user id: records forwarded, exactly once, to the partition that owns their user, with the
watermarks of the partitions they were read from.

Users must never span partitions (unique users add across partitions; user documents and duplicate detection
have one owner). A valid input record, on time where it was read, whose user another partition owns by Kafka's
default partitioner (murmur2 of the user id, as Java clients key records) is not counted where it was read: it
goes to that partition of ``<group>.repartition`` in the transaction of the flush that commits its input offset
(so it is forwarded exactly once). A flush sends each owner one record: the records forwarded to it, packed with
where each was read and its Kafka timestamp, and headers with the sending partition, its input position and its
source watermark there; every other partition gets one, perhaps of no records, whenever that watermark moved.
An owner's windows close at the smallest of its sources' watermarks (see ``native/src/progress.rs``). Records
keyed by user id never take this hop.

The owning partition takes the records forwarded to it at its flushes, after the input it has read so far: a
point that depends on timing, so each flush that takes some records it as a decision
(:mod:`pulse.aggregate.decisions`) that `pulse verify` replays. Its position in the repartition topic is part of
its state (changelog), and of the documents' version.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
from confluent_kafka import Consumer, Message, TopicPartition

from pulse.aggregate._core import IDLE_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, WATERMARK_HEADER
from pulse.connect.kafka import client_config
from pulse.kafkaio import BULK_FETCH, QUIET_LOG, read_messages


@dataclass(frozen=True)
class Origin:
    """Where a forwarded record was first read, and its Kafka timestamp there; or, for the watermark that closes
    each batch, the sending partition's source watermark after its input up to ``offset``, and whether it is idle."""
    partition: int
    offset: int
    record_ts: int | None = None
    watermark: int | None = None
    idle: bool = False
    correction: bool = False  # its source judged it a correction (below its watermark, within the horizon)


def batch_headers(partition: int, offset: int, watermark: int | None, idle: bool) -> list[tuple[str, bytes]]:
    """A batch's headers: who sent it, its input position then, and (on a flush's last batch for an owner) its
    source watermark there."""
    out = [(SOURCE_PARTITION_HEADER, b"%d" % partition), (SOURCE_OFFSET_HEADER, b"%d" % offset)]
    if watermark is not None:
        out += [(WATERMARK_HEADER, b"%d" % watermark), (IDLE_HEADER, b"1" if idle else b"0")]
    return out


class _Packed(msgspec.Struct, array_like=True):
    """A forwarded record as a batch packs it (``native/src/forward.rs``)."""
    offset: int
    record_ts: int
    value: bytes
    correction: bool = False


_PACKED = msgspec.msgpack.Decoder(list[_Packed])


def unpack(value: bytes | None, headers: list[tuple[str, bytes]]) -> Iterator[tuple[Origin, bytes | None]]:
    """A batch's forwarded records (origin, value), then its watermark if it carries one (origin, None)."""
    found = {name: int(raw) for name, raw in headers if raw is not None}
    sender = found[SOURCE_PARTITION_HEADER]
    for r in _PACKED.decode(value) if value else []:
        yield Origin(sender, r.offset, r.record_ts, correction=r.correction), r.value
    mark = watermark_of(headers)
    if mark is not None:
        yield mark, None


def watermark_of(headers: list[tuple[str, bytes]]) -> Origin | None:
    """The watermark a batch carries, from its headers alone (None: it carries none)."""
    found = {name: int(raw) for name, raw in headers if raw is not None}
    if WATERMARK_HEADER not in found:
        return None
    return Origin(found[SOURCE_PARTITION_HEADER], found[SOURCE_OFFSET_HEADER], watermark=found[WATERMARK_HEADER],
                  idle=found.get(IDLE_HEADER) == 1)


def read_forwarded(bootstrap: str, topic: str, partition: int, start: int = 0,
                   end: int | None = None) -> Iterator[tuple[int, Origin, bytes | None]]:
    """The committed records of one repartition topic partition, unpacked, as (offset, origin, value): each batch's
    records share its offset, and its watermark comes last (value None)."""
    for msg in read_messages(bootstrap, topic, partition, start, end):
        for found, value in unpack(msg.value(), msg.headers() or []):
            yield msg.offset(), found, value


FORWARDED_CLIENT = "repartition.consumer"


def forwarded_settings() -> dict[str, object]:
    """The reader of the repartition topic: not a group member (the input consumer's group decides what is
    owned), so its group id is its own."""
    return {"group.id": f"pulse-forwarded-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "auto.offset.reset": "earliest", "logger": QUIET_LOG, **BULK_FETCH}


class ForwardedInput:
    """Reads the repartition topic's partitions of the input partitions this instance owns, from the positions
    their states restored. Not a group member: the input consumer's group decides what is owned."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(client_config(bootstrap, forwarded_settings(), client=FORWARDED_CLIENT))
        self._wanted: dict[int, int] = {}  # partition → position to start from
        self._stale = False  # the consumer's assignment is not `_wanted` yet

    def follow(self, positions: dict[int, int]) -> None:
        """Read exactly these partitions, from these positions: on assignment, revocation and reload (takes effect
        at the next :meth:`take`)."""
        self._wanted = dict(positions)
        self._stale = True

    def take(self, limit: int) -> list[Message]:
        """The records fetched so far (up to ``limit``), without waiting. Assignment changes apply here, once the
        topic exists (the aggregator creates it while joining its group)."""
        if self._stale:
            self._consumer.assign([TopicPartition(self.topic, p, offset) for p, offset in self._wanted.items()])
            self._stale = False
            return []
        if not self._wanted:
            return []
        return self._consumer.consume(limit, 0)

    def pending(self, partition: int, position: int) -> bool:
        """True if the partition has records past ``position`` as last fetched (local lookups, no request). A
        transaction's last record is its commit marker, which is never taken; the consumer's own position moves
        past markers and aborted records."""
        if self._stale or partition not in self._wanted:
            return False
        tp = TopicPartition(self.topic, partition)
        _, high = self._consumer.get_watermark_offsets(tp, cached=True)
        return high > max(position + 1, self._consumer.position([tp])[0].offset)

    def drained(self, positions: dict[int, int], ends: dict[int, int]) -> bool:
        """Every partition taken to its end; ``ends``: the partitions' end offsets, as the broker gave them (one
        batched lookup: asking this consumer partition by partition took half a second each before it had ever
        fetched)."""
        for p, position in positions.items():
            high = ends.get(p, 0)
            if high > 0 and position < high - 1 and self._consumer.position([TopicPartition(self.topic, p)])[0].offset \
                    < high:
                return False
        return True

    def close(self) -> None:
        self._consumer.close()
