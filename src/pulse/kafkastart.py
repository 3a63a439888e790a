"""Where a newly assigned partition starts reading. It imports nothing but confluent-kafka: the raw ceiling of
`pulse bench aggregate` starts the way the aggregator does, without paying for Pulse's other imports."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition


def start_where_committed(consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = 10.0) -> None:
    """Set assigned ``partitions`` to start at their group's committed offsets, or at the beginning where there is
    none (as ``auto.offset.reset=earliest`` would). Left to librdkafka, a partition without a committed offset
    starts only after librdkafka's retry timer; this is one round trip. If it fails, the partitions keep their
    offsets and librdkafka looks them up itself."""
    if not partitions:
        return
    try:
        committed = {tp.partition: tp for tp in consumer.committed(partitions, timeout=timeout_s)}
    except KafkaException:
        return
    for tp in partitions:
        found = committed.get(tp.partition)
        if found is not None and found.error is None:
            tp.offset = found.offset if found.offset >= 0 else OFFSET_BEGINNING
