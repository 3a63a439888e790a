"""Joining the input topic's consumer group, which can start before the rest of the aggregator is loaded.

A group join takes a few round trips that need nothing from the engine: librdkafka runs them
on its own threads, and the rebalance callbacks that hand partitions over only ever run inside ``consume()``.
So `pulse aggregate` subscribes first and imports the engine while the broker assigns partitions; the callbacks
reach the engine once it has attached itself (:meth:`Membership.attach`).
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from pulse.connect.kafka import client_config
from pulse.kafkaio import INPUT_FETCH, QUIET_LOG, outage_log

Rebalance = Callable[[Consumer, list[TopicPartition]], None]


INPUT_CLIENT = "aggregate.consumer"
"""The aggregator's input consumer, as operators' scoped properties name it (``aggregate.consumer.*``)."""


def input_settings(bootstrap: str, group: str) -> dict[str, object]:
    """Pulse's own settings for the input consumer (the operator's properties win over its tuning).

    The session timeout is the broker's smallest by default: a dead member's partitions wait that long for a new
    owner. The other members learn of the rebalance with their next heartbeat, so heartbeats come often."""
    return {
        "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "session.timeout.ms": 6_000, "heartbeat.interval.ms": 500, "max.poll.interval.ms": 300_000,
        "partition.assignment.strategy": "range", **INPUT_FETCH,
        "logger": QUIET_LOG, "error_cb": outage_log("aggregate", bootstrap),
    }


def _input_config(bootstrap: str, group: str) -> dict[str, object]:
    return client_config(bootstrap, input_settings(bootstrap, group), client=INPUT_CLIENT)


def input_consumer(bootstrap: str, group: str) -> Consumer:
    """The aggregator's consumer: offsets are committed only inside its transactions, and it reads only
    committed records (a crashed producer's open transaction is never aggregated)."""
    return Consumer(_input_config(bootstrap, group))


def session_timeout_s(bootstrap: str, group: str) -> float:
    """How long the group keeps a member that stopped heartbeating (the operator's setting, if given)."""
    return int(str(_input_config(bootstrap, group)["session.timeout.ms"])) / 1000


def _not_attached(_consumer: Consumer, _partitions: list[TopicPartition]) -> None:
    raise RuntimeError("a rebalance arrived before the engine attached its handlers")  # consume() came too early


class Membership:
    """A consumer subscribed to ``topic`` whose rebalance callbacks go to the handlers attached later."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.topic = topic
        self.consumer = input_consumer(bootstrap, group)
        self.on_assign: Rebalance = _not_attached
        self.on_revoke: Rebalance = _not_attached
        self.on_lost: Rebalance = _not_attached
        self.consumer.subscribe([topic], on_assign=lambda c, p: self.on_assign(c, p),
                                on_revoke=lambda c, p: self.on_revoke(c, p), on_lost=lambda c, p: self.on_lost(c, p))

    def attach(self, on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance) -> None:
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost
