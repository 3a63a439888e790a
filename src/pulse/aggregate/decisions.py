"""Decisions the aggregator takes by timing, recorded durably so that `pulse verify` reproduces them.

Everything else the engine decides follows from the input in offset order. Three things cannot:
- a quiet partition's event time (and that it is idle) depends on how long it has been quiet;
- that a source partition stalled (its watermark has not moved for `--stall-timeout`) depends on the wall clock;
- when records forwarded from other partitions (:mod:`pulse.aggregate.repartition`) are taken depends on when
  they arrived.
Each such decision is one record in ``<group>.decisions`` (never compacted), written in the transaction of the
flush that takes it, in the order taken: at input position ``offset`` of partition ``partition``, its source
watermark became at least ``floor`` and it was idle until its next input record, or it took the repartition
topic's records (forwarded records and other partitions' watermarks) up to offset ``taken_until``, or it treats
source partition ``stalled`` as idle until that partition's next watermark.
"""

from __future__ import annotations

import msgspec

from pulse.kafkaio import read_range
from pulse.topics import decisions_topic, partition_count, topic_exists


class Decision(msgspec.Struct, frozen=True, omit_defaults=True):
    topic: str  # the input topic
    partition: int
    offset: int  # taken when the partition's input was read up to here (its next offset)
    floor: int | None = None  # an idle step: the partition's source watermark is at least this (epoch ms) ...
    clock: int | None = None  # ... by its event-time clock then: its last event time + the quiet time
    idle: bool = False  # ... and the source is idle until its next input record
    taken_until: int | None = None  # forwarded records taken: those before this repartition topic offset
    stalled: int | None = None  # this source partition's watermark had not moved for long: idle here until it does
    decided_at: int = 0  # wall clock, epoch ms (for people; nothing reads it)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Decision)


def encode(decision: Decision) -> bytes:
    return _ENCODER.encode(decision)


def decode(value: bytes) -> Decision:
    return _DECODER.decode(value)


def read_decisions(bootstrap: str, group: str, topic: str) -> dict[int, list[Decision]]:
    """The committed decisions of ``group`` about input ``topic``, per partition in the order they were taken."""
    name = decisions_topic(group)
    out: dict[int, list[Decision]] = {}
    if not topic_exists(bootstrap, name):
        return out
    for p in range(partition_count(bootstrap, name)):
        for _, _, value, _ in read_range(bootstrap, name, p, 0):
            if value is None:
                continue
            d = decode(value)
            if d.topic == topic:
                out.setdefault(d.partition, []).append(d)
    return out
