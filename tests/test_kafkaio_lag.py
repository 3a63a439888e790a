"""Lag in seconds, against the real broker: how long a group's oldest uncommitted record has waited."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from pulse.kafkaio import lag_reader, waiting_seconds
from tests.names import unique


def test_the_oldest_uncommitted_record_sets_the_lag_in_seconds(bootstrap: str, new_topic) -> None:
    topic = new_topic(partitions=2, config={"message.timestamp.type": "LogAppendTime"})
    group = unique("lag")
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, b"old", partition=0)
    producer.flush(10)
    time.sleep(2.0)
    producer.produce(topic, b"new", partition=1)
    producer.flush(10)
    reader = lag_reader(bootstrap, group)
    try:
        waited = waiting_seconds(reader, topic, timeout_s=5)
        assert waited is not None and 2.0 <= waited < 10, waited  # partition 0's record, not partition 1's
        committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        committer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        waited = waiting_seconds(reader, topic, timeout_s=5)
        assert waited is not None and waited < 2.0, waited  # now only the newer record waits
        committer.commit(offsets=[TopicPartition(topic, 1, 1)], asynchronous=False)
        committer.close()
        assert waiting_seconds(reader, topic, timeout_s=5) == 0.0
    finally:
        reader.close()
