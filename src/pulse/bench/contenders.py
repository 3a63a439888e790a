"""Baselines for `pulse bench aggregate`, each run as its own process: ``python -m pulse.bench.contenders``.

- ``raw``: confluent-kafka consume-and-discard, the ceiling for a Python consumer;
- ``naive``: the design Pulse replaces: dict state in memory, one Elasticsearch document per event,
  at-least-once (auto-commit).
"""

from __future__ import annotations

import argparse
import json

from confluent_kafka import Consumer, TopicPartition

from pulse.connect.kafka import client_config
from pulse.kafkastart import start_where_committed


def _consumer(broker: str, group: str, auto_commit: bool, config: dict[str, object]) -> Consumer:
    return Consumer(client_config(broker, {"group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": auto_commit, "auto.commit.interval.ms": 1000, **config}))


def _start_as_pulse(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """Start reading exactly as `pulse aggregate` does (without librdkafka's 100 ms wait on a new group), so the
    ceiling is not slower than Pulse at start-up."""
    start_where_committed(consumer, partitions)
    consumer.assign(partitions)


def raw(broker: str, topic: str, group: str, config: dict[str, object]) -> None:
    consumer = _consumer(broker, group, False, config)
    consumer.subscribe([topic], on_assign=_start_as_pulse)
    while True:
        batch = consumer.consume(20_000, 0.5)
        if batch:
            consumer.commit(asynchronous=True)


def naive_index(group: str) -> str:
    return f"{group}-events"


def naive(broker: str, topic: str, group: str, es_url: str, config: dict[str, object]) -> None:
    from elasticsearch import Elasticsearch, helpers

    es = Elasticsearch(es_url)
    index = naive_index(group)
    consumer = _consumer(broker, group, True, config)
    consumer.subscribe([topic])
    per_type: dict[str, int] = {}
    revenue = 0.0
    users: dict[str, dict[str, int]] = {}
    while True:
        docs = []
        for msg in consumer.consume(500, 0.5):
            if msg.error():
                continue
            try:
                event = json.loads(msg.value())
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(event, dict) or "event_type" not in event:
                continue
            per_type[event["event_type"]] = per_type.get(event["event_type"], 0) + 1
            if event["event_type"] == "purchase":
                revenue += event.get("amount") or 0
            counts = users.setdefault(str(event.get("user_id")), {})
            counts[event["event_type"]] = counts.get(event["event_type"], 0) + 1
            docs.append({"_index": index, "_source": event})
        if docs:
            helpers.bulk(es, docs, raise_on_error=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["raw", "naive"])
    ap.add_argument("--broker", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--es-url", default="http://127.0.0.1:9200")
    ap.add_argument("--config", type=json.loads, default={},
                    help="Extra consumer settings as JSON (the benchmark passes the fetch sizes Pulse uses).")
    args = ap.parse_args()
    try:
        if args.kind == "raw":
            raw(args.broker, args.topic, args.group, args.config)
        else:
            naive(args.broker, args.topic, args.group, args.es_url, args.config)
    except KeyboardInterrupt:  # how the benchmark stops a contender once it has committed everything
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
