"""Case 1 of the real world, as far as it goes today: input not keyed by user id (a plain client's null keys)
is reported at run time, once a minute per partition, instead of being noticed only by `pulse verify`."""

from __future__ import annotations

import subprocess
import sys

import orjson
from confluent_kafka import Producer

from pulse.generate.partitioner import partition_for
from tests.names import unique
from tests.realworld.plain import event, now_ms, produce

REPORT = "belong to users that Kafka's default partitioner"


def _aggregate(topic: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "pulse", "aggregate", "--topic", topic, "--group", unique("g"),
                           "--exit-when-idle", "3"], capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def test_input_not_keyed_by_user_id_is_reported_at_run_time(bootstrap, new_topic) -> None:
    keyed, unkeyed = new_topic(partitions=6, prefix="keyed"), new_topic(partitions=6, prefix="unkeyed")
    base = now_ms() - 20_000
    events = [event(n, base + n) for n in range(600)]
    producer = Producer({"bootstrap.servers": bootstrap})
    for e in events:  # where a Java client's default partitioner puts them, as `pulse generate` does
        key = e["user_id"].encode()
        producer.produce(keyed, orjson.dumps(e), key, partition=partition_for(key, 6))
    assert producer.flush(30) == 0
    produce(bootstrap, unkeyed, events)  # null keys: a plain client spreads them over the partitions

    assert REPORT not in _aggregate(keyed)
    assert REPORT in _aggregate(unkeyed)
