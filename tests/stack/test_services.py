"""The real Kafka broker and Elasticsearch node that `pulse stack up` runs: basic contracts Pulse relies on."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, Producer
from elasticsearch import Elasticsearch

from tests.names import unique


def _consume_all(bootstrap: str, topic: str, *, isolation: str, expect: int, timeout: float = 20.0) -> list[bytes]:
    import time

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("t", 6),
                         "auto.offset.reset": "earliest", "isolation.level": isolation,
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expect:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            out.append(msg.value())
        # give a little extra time so that unexpected extra records would show up
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            msg = consumer.poll(0.3)
            if msg is not None and not msg.error():
                out.append(msg.value())
    finally:
        consumer.close()
    return out


def test_produce_consume_round_trip(bootstrap: str, new_topic) -> None:
    topic = new_topic(partitions=3)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    sent = [f"message-{i}".encode() for i in range(200)]
    for i, value in enumerate(sent):
        producer.produce(topic, key=str(i % 7).encode(), value=value)
    assert producer.flush(20) == 0
    got = _consume_all(bootstrap, topic, isolation="read_uncommitted", expect=len(sent))
    assert sorted(got) == sorted(sent)


def test_transactions_commit_and_abort_seen_by_read_committed(bootstrap: str, new_topic) -> None:
    topic = new_topic(partitions=2)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("tx")})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=b"k", value=f"aborted-{i}".encode())
    producer.flush(10)
    producer.abort_transaction(30)

    committed_view = _consume_all(bootstrap, topic, isolation="read_committed", expect=10)
    assert sorted(committed_view) == sorted(f"committed-{i}".encode() for i in range(10))
    raw_view = _consume_all(bootstrap, topic, isolation="read_uncommitted", expect=20)
    assert len([v for v in raw_view if v.startswith(b"aborted")]) == 10


def test_index_with_explicit_mapping_write_and_search(es_url: str) -> None:
    es = Elasticsearch(es_url)
    index = unique("test-mapping")
    es.indices.create(index=index, settings={"number_of_replicas": 0}, mappings={
        "dynamic": "strict",
        "properties": {"user_id": {"type": "keyword"}, "ts": {"type": "date"}, "amount": {"type": "double"}},
    })
    try:
        docs = [{"user_id": f"u{i % 3}", "ts": 1_700_000_000_000 + i, "amount": i * 1.5} for i in range(9)]
        for i, doc in enumerate(docs):
            es.index(index=index, id=str(i), document=doc)
        es.indices.refresh(index=index)
        res = es.search(index=index, size=0, query={"term": {"user_id": "u1"}},
                        aggs={"total": {"sum": {"field": "amount"}}})
        assert res["hits"]["total"]["value"] == 3
        assert res["aggregations"]["total"]["value"] == sum(d["amount"] for d in docs if d["user_id"] == "u1")
        mapping = es.indices.get_mapping(index=index)[index]["mappings"]
        assert mapping["properties"]["user_id"]["type"] == "keyword"
        # strict mapping: an unknown field is refused, not silently added
        try:
            es.index(index=index, id="bad", document={"nope": 1})
            raise AssertionError("strict mapping accepted an unknown field")
        except Exception as exc:
            assert "strict_dynamic_mapping_exception" in str(exc)
    finally:
        es.indices.delete(index=index)
