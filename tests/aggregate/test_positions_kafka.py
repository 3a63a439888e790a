"""What the aggregator's reading of transactional input relies on in librdkafka (see
`ReadPositions.skip_passed`): a read_committed consumer's position passes a transaction's marker, or an aborted
transaction, only once it has returned the records before it; and an assignment or a seek back resets the position
before any record comes, so it is never ahead of a record not yet returned."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.names import unique

INVALID = -1001


def _position(consumer: Consumer, topic: str) -> int:
    return consumer.position([TopicPartition(topic, 0)])[0].offset


def _take(consumer: Consumer, count: int) -> list[int]:
    offsets: list[int] = []
    for _ in range(50):
        offsets += [m.offset() for m in consumer.consume(count - len(offsets), 0.2) if m.error() is None]
        if len(offsets) == count:
            break
    return offsets


def test_the_position_passes_markers_only_after_the_records_before_them(bootstrap: str) -> None:
    topic = unique("positions")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("positions")})
        producer.init_transactions(30)
        for commit in (True, False):  # records 0-2 and their marker at 3; an aborted 4-5 and its marker at 6
            producer.begin_transaction()
            for n in range(3 if commit else 2):
                producer.produce(topic, f"r{n}".encode(), partition=0)
            producer.flush(30)
            (producer.commit_transaction if commit else producer.abort_transaction)(30)

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                             "isolation.level": "read_committed"})
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            assert _position(consumer, topic) == INVALID  # nothing returned yet
            assert _take(consumer, 1) == [0]
            assert _position(consumer, topic) == 1  # not past records fetched but not yet returned
            assert _take(consumer, 2) == [1, 2]
            assert not consumer.consume(1, 1.0)  # nothing more to return: the markers and aborted records
            assert _position(consumer, topic) == 7  # past them all

            consumer.seek(TopicPartition(topic, 0, 1))  # a reload reads again from an earlier offset
            assert _position(consumer, topic) == INVALID
            assert _take(consumer, 1) == [1]
            assert _position(consumer, topic) == 2

            consumer.unassign()  # a rebalance hands the partition back, to be read from the start
            consumer.assign([TopicPartition(topic, 0, 0)])
            assert _position(consumer, topic) == INVALID
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])
