"""Benchmarks delete what they created, and only that (real broker and node)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from confluent_kafka.admin import AdminClient, NewTopic
from elasticsearch import Elasticsearch

from pulse.bench.scratch import scratch
from pulse.config import Settings


def test_a_run_deletes_its_own_topics_and_indices_only(settings: Settings, bootstrap: str, es_url: str,
                                                        new_topic: Callable[..., str]) -> None:
    admin, es = AdminClient({"bootstrap.servers": bootstrap}), Elasticsearch(es_url)
    before_topic = new_topic(prefix="bench-kept")  # a benchmark topic that existed before the run
    tag = uuid.uuid4().hex[:8]
    made_topics = [f"pulse.bench.t-{tag}", f"bench-t-{tag}.changelog", f"changelog__bench-quix-{tag}--x"]
    with scratch(settings):
        for fut in admin.create_topics([NewTopic(t, 1, 1) for t in made_topics]).values():
            fut.result(timeout=30)
        es.indices.create(index=f"bench-naive-{tag}-events")
    topics = set(admin.list_topics(timeout=10).topics)
    assert before_topic in topics
    assert not topics & set(made_topics)
    assert not es.indices.exists(index=f"bench-naive-{tag}-events")
