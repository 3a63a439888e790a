"""Case 5 of the real world: a partition that sees 200k distinct items in one window (an item shard's rows
outgrow Kafka's 1 MB message limit) and a ~900 KB input record (Kafka's defaults accept it). Item shards are cut
into pages, the big record's dead letter keeps its reason, size and digest with the payload truncated, and
everything ends with `pulse verify` exact and no store dead letters."""

from __future__ import annotations

import hashlib

import pytest
from elasticsearch import Elasticsearch

from pulse.aggregate.checkpoint import DEAD_LETTER_BYTES
from pulse.kafkaio import read_range
from tests.aggregate.harness import read_latest_docs, run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.names import unique
from tests.realworld.plain import count_records, event, headers_of, now_ms, produce

ITEMS = 200_000


@pytest.mark.slow
def test_a_huge_catalogue_and_a_huge_record_never_stop_the_aggregator(bootstrap, es_url, new_topic,
                                                                       index_prefix) -> None:
    topic, group = new_topic(partitions=1, prefix="sizes"), unique("g")
    base = now_ms() - 120_000
    long = "c" * 60
    events = (event(n, base + n // 100, item_id=f"item-{n:08d}-{'x' * 40}", category=f"{long}{n % 7}")
              for n in range(ITEMS))
    produce(bootstrap, topic, events, key=lambda e: e["user_id"])
    huge = b'{"event_id":"big","event_type":"view","category":"' + b"y" * 900_000 + b'"}'
    produce(bootstrap, topic, [huge])
    run_aggregator_until_idle(topic, group, timeout=600)

    docs = read_latest_docs(bootstrap, f"{group}.aggregates")
    assert docs["partition:0"]["accepted"] == ITEMS and docs["partition:0"]["dead_lettered"] == 1
    assert any(".1:p0" in doc_id for doc_id in docs if doc_id.startswith("window_items:1h:")), "no shard was paged"
    [(_, _, value, _)] = list(read_range(bootstrap, f"{topic}.dlq", 0, 0))
    assert value == huge[:DEAD_LETTER_BYTES]
    assert headers_of(bootstrap, f"{topic}.dlq", "pulse.reason") == ["oversized"]
    assert headers_of(bootstrap, f"{topic}.dlq", "pulse.original.size") == [str(len(huge))]
    assert headers_of(bootstrap, f"{topic}.dlq", "pulse.original.sha256") == [hashlib.sha256(huge).hexdigest()]

    run_store(topic, group, index_prefix, timeout=900)
    Elasticsearch(es_url).indices.refresh(index=f"{index_prefix}-*")
    assert count_records(bootstrap, f"{group}.store-dlq") == 0
    ok = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix, timeout=900)
    assert ok.returncode == 0, ok.stdout + ok.stderr
