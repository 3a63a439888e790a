"""Case 6 of the real world: input written by a transactional producer (an exactly-once app upstream: Kafka
Streams, Flink's Kafka sink, a plain client with a transactional id). Every transaction ends in a marker that no
consumer ever sees, and aborted transactions leave records a read_committed consumer skips. The aggregator must
still read each partition to its end: commit past the markers, stop a batch run, count no aborted event."""

from __future__ import annotations

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pulse.kafkaio import end_offsets
from tests.aggregate.harness import read_latest_docs, run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.names import unique
from tests.realworld.plain import event, now_ms

PARTITIONS = 4
ONLY_ABORTED = 3  # a partition that never gets a committed record: just an aborted transaction and its marker


def _write_in_transactions(bootstrap: str, topic: str) -> list[dict]:
    """Committed and aborted transactions, ending in an aborted one; returns the committed events."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("upstream-app")})
    producer.init_transactions(30)
    base, committed = now_ms() - 120_000, []
    for t, commit in enumerate((True, False, True, True, False)):
        events = [event(n, base + 50 * n) if commit else event(n, base + 50 * n, user_id=f"ghost{n}")
                  for n in range(200 * t, 200 * t + 200)]
        producer.begin_transaction()
        for n, e in enumerate(events):  # partitions chosen as an app's own partitioner would
            partition = n % ONLY_ABORTED if commit else n % PARTITIONS
            producer.produce(topic, orjson.dumps(e), e["user_id"].encode(), partition)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
            committed += events
        else:
            producer.abort_transaction(30)
    return committed


def _committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = reader.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        reader.close()


def test_input_from_a_transactional_producer_is_read_to_its_end(bootstrap, es_url, new_topic, index_prefix) -> None:
    topic, group = new_topic(partitions=PARTITIONS, prefix="txin"), unique("g")
    committed = _write_in_transactions(bootstrap, topic)

    run_aggregator_until_idle(topic, group, timeout=120)  # waited for ever on the markers before

    ends = end_offsets(AdminClient({"bootstrap.servers": bootstrap}), topic, list(range(PARTITIONS)))
    assert _committed_offsets(bootstrap, group, topic) == ends  # past every marker and aborted record
    docs = read_latest_docs(bootstrap, f"{group}.aggregates")
    assert sum(d["accepted"] for i, d in docs.items() if i.startswith("partition:")) == len(committed)
    users = {d["user_id"] for i, d in docs.items() if i.startswith("user:")}
    assert users == {e["user_id"] for e in committed}  # no event of an aborted transaction counted

    run_store(topic, group, index_prefix)
    verify = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix)
    assert verify.returncode == 0, verify.stdout + verify.stderr
