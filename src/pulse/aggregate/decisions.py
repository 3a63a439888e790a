"""Decisions the aggregator takes by the wall clock, recorded durably so that `pulse verify` reproduces them.

Everything else the engine decides follows from the input in offset order. Closing the windows of a quiet
partition cannot: it depends on how long the partition has been quiet. Each such decision is one record in
``<group>.decisions`` (never compacted), written in the transaction of the flush that takes it: from input
position ``offset`` on, partition ``partition``'s watermark is at least ``floor``.
"""

from __future__ import annotations

import msgspec

from pulse.kafkaio import read_range
from pulse.topics import decisions_topic, partition_count, topic_exists


class Decision(msgspec.Struct, frozen=True):
    topic: str  # the input topic
    partition: int
    offset: int  # applies to the records from this input offset on
    floor: int  # the partition's watermark is at least this (epoch ms)
    clock: int  # the partition's event-time clock when it was decided: its last event time + the quiet time
    decided_at: int  # wall clock, epoch ms (for people; nothing reads it)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Decision)


def encode(decision: Decision) -> bytes:
    return _ENCODER.encode(decision)


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
            d = _DECODER.decode(value)
            if d.topic == topic:
                out.setdefault(d.partition, []).append(d)
    return out
