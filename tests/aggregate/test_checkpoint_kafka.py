"""A transaction that outlives its timeout while the brokers restart is aborted by its coordinator, which fences the
producer: the aggregator's own abort then fails with a fatal "fenced" error although no other instance exists. It
must replace its producer and go on (a rolling restart ended an aggregator with that traceback)."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from pulse.aggregate.checkpoint import Checkpoint, Topics
from tests.names import unique
from tests.realworld.plain import count_records

TIMEOUT_MS = 1_000
BROKER_ABORTS_WITHIN_S = 20  # the coordinator looks for expired transactions every 10 s (Kafka's default)


def test_an_abort_refused_because_the_broker_fenced_the_transaction_replaces_the_producer(bootstrap: str) -> None:
    topic = unique("ckpt")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    try:
        checkpoint = Checkpoint(bootstrap, unique("ckpt-a"), TIMEOUT_MS, Topics(*[topic] * 7))
        checkpoint.start()
        checkpoint.ready()
        stuck = checkpoint._producer
        stuck.begin_transaction()
        stuck.produce(topic, b"never committed")
        stuck.flush(10)
        time.sleep(BROKER_ABORTS_WITHIN_S)  # the coordinator aborts it and bumps the producer's epoch

        # what the engine hands over when a flush fails with an abortable error meanwhile
        checkpoint.failed(KafkaError(KafkaError._STATE, "a flush failed", txn_requires_abort=True))

        fresh = checkpoint._producer
        assert fresh is not stuck
        fresh.begin_transaction()
        fresh.produce(topic, b"committed")
        fresh.commit_transaction(30)
        assert count_records(bootstrap, topic) == 1
    finally:
        admin.delete_topics([topic])

