"""Input as other people's producers write it: a plain confluent-kafka client with its default settings and
partitioner (librdkafka's consistent_random: CRC32 of the key, a random partition for a null key), not
`pulse generate`; and what a run left behind, read straight from the topics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from confluent_kafka import Producer

from pulse.topics import partition_count


def now_ms() -> int:
    return int(time.time() * 1000)


def event(n: int, ts: int, **fields: Any) -> dict[str, Any]:
    """A valid event; ``fields`` override the defaults."""
    return {"event_id": f"e{n}", "event_type": "view", "ts": ts, "user_id": f"u{n % 37}", "session_id": f"s{n % 53}",
            "item_id": f"i{n % 11}", "category": "books", "status": "ok", **fields}


def produce(bootstrap: str, topic: str, events: Iterable[dict[str, Any] | bytes],
            key: Callable[[dict[str, Any]], str | None] = lambda e: None,
            timestamp: Callable[[dict[str, Any]], int] | None = None,
            partition: Callable[[dict[str, Any]], int | None] | None = None) -> int:
    """Produce events as JSON with a default client; ``key`` picks a record key (None: unkeyed),
    ``timestamp`` a record timestamp (None: the client's clock) and ``partition`` a partition, as a producer with
    its own partitioner does (None: the client's default partitioner). Returns how many were produced."""
    producer = Producer({"bootstrap.servers": bootstrap})
    n = 0
    for e in events:
        value = e if isinstance(e, bytes) else orjson.dumps(e)
        k = None if isinstance(e, bytes) else key(e)
        ts = 0 if timestamp is None or isinstance(e, bytes) else timestamp(e)
        chosen = None if partition is None or isinstance(e, bytes) else partition(e)
        producer.produce(topic, value, None if k is None else k.encode(), partition=-1 if chosen is None else chosen,
                         timestamp=ts)
        producer.poll(0)
        n += 1
    assert producer.flush(30) == 0
    return n


def count_records(bootstrap: str, topic: str, client: dict[str, str] | None = None) -> int:
    """Committed records in ``topic``, read to its end by a plain read_committed consumer (``client``: its
    settings, for a secure cluster); 0 if it does not exist (nothing was ever written to it)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    config = client or {"bootstrap.servers": bootstrap}
    consumer = Consumer(config | {"group.id": "unused", "enable.auto.commit": False, "enable.partition.eof": True,
                                  "isolation.level": "read_committed"})
    try:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return 0
        consumer.assign([TopicPartition(topic, p, 0) for p in found.partitions])  # 0: each partition's start
        pending, n, deadline = set(found.partitions), 0, time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                if msg.error() is None:
                    n += 1
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                else:
                    raise AssertionError(f"reading {topic}: {msg.error().str()}")
        assert not pending, f"{topic}: partitions {sorted(pending)} not read to their end within 120 s"
        return n
    finally:
        consumer.close()


def headers_of(bootstrap: str, topic: str, name: str) -> list[str]:
    """One header's values over every record of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    parts = partition_count(bootstrap, topic)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    total, got = count_records(bootstrap, topic), []
    deadline = time.monotonic() + 30
    while len(got) < total and time.monotonic() < deadline:
        for msg in consumer.consume(500, 0.5):
            if msg.error() is None:
                got.append(dict(msg.headers() or []).get(name, b"").decode())
    consumer.close()
    return got
