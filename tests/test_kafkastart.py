"""Where an assigned partition starts reading (`start_where_committed`), against the real broker."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, OFFSET_STORED, Consumer, Producer, TopicPartition

from pulse.kafkastart import start_where_committed
from tests.names import unique


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})


def _produce(bootstrap: str, topic: str, partition: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def test_committed_offsets_are_kept_and_partitions_without_one_start_at_the_beginning(
        bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=3)
    for p in range(3):
        _produce(bootstrap, topic, p, 10)
    group = unique("test-start")
    earlier = _consumer(bootstrap, group)
    try:
        earlier.commit(offsets=[TopicPartition(topic, 1, 7)], asynchronous=False)
    finally:
        earlier.close()
    consumer = _consumer(bootstrap, group)
    try:
        parts = [TopicPartition(topic, p, OFFSET_STORED) for p in range(3)]
        start_where_committed(consumer, parts)
        assert [tp.offset for tp in parts] == [OFFSET_BEGINNING, 7, OFFSET_BEGINNING]
        # and reading from there yields exactly the records after those positions
        consumer.assign(parts)
        seen: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
        for _ in range(100):
            for msg in consumer.consume(100, 0.2):
                assert msg.error() is None
                seen[msg.partition()].append(msg.value())
            if sum(map(len, seen.values())) >= 23:
                break
        assert seen == {0: [f"0-{i}".encode() for i in range(10)], 1: [b"1-7", b"1-8", b"1-9"],
                        2: [f"2-{i}".encode() for i in range(10)]}
    finally:
        consumer.close()


def test_when_the_lookup_fails_the_offsets_are_left_to_librdkafka() -> None:
    """A broker that does not answer: the partitions keep OFFSET_STORED (librdkafka then looks them up itself)."""
    import socket

    with socket.socket() as free:  # a loopback port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    consumer = _consumer(f"127.0.0.1:{port}", unique("test-start"))
    try:
        parts = [TopicPartition("nowhere", 0, OFFSET_STORED)]
        start_where_committed(consumer, parts, timeout_s=0.5)
        assert parts[0].offset == OFFSET_STORED
    finally:
        consumer.close()
