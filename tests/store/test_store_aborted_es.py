"""A store whose source ends in an aborted transaction still commits to the end and finishes its batch run: a
read_committed consumer skips the aborted records, so no document ever comes to carry that commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pulse.kafkaio import end_offsets
from pulse.topics import aggregates_topic, store_group
from tests.aggregate.harness import generate, run_aggregator_until_idle, run_store
from tests.names import unique


def _abort_a_transaction(bootstrap: str, topic: str) -> None:
    """As an aggregator does when it is fenced mid-flush: records written, then the transaction aborted."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("aborted")})
    producer.init_transactions(30)
    producer.begin_transaction()
    for partition in (0, 1):
        producer.produce(topic, b"{}", b"never-read", partition)
    producer.flush(30)
    producer.abort_transaction(30)


def _committed(bootstrap: str, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = reader.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        reader.close()


def test_a_trailing_aborted_transaction_is_committed_past(bootstrap, es_url, new_topic, index_prefix,
                                                          tmp_path: Path) -> None:
    topic, group = new_topic(partitions=2, prefix="ab"), unique("g")
    generate(topic, tmp_path / "l.gz", 2_000, "--rate", "0")
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, index_prefix)
    source = aggregates_topic(group)
    _abort_a_transaction(bootstrap, source)

    store = subprocess.run([sys.executable, "-m", "pulse", "store", "--topic", topic, "--group", group,
                            "--index-prefix", index_prefix, "--exit-when-idle", "1.5"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert store.returncode == 0, store.stderr[-3000:]
    ends = end_offsets(AdminClient({"bootstrap.servers": bootstrap}), source, [0, 1])
    assert _committed(bootstrap, store_group(group), source, [0, 1]) == ends  # the abort markers included
