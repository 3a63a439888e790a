"""Benchmarks clean up after themselves: the topics and indices a run created are deleted when it ends.

Each run pre-produces hundreds of thousands of events and every contender adds its own topics (changelogs,
Quix's internal topics) and, for the naive design, an Elasticsearch index of every event. Left behind, a few
runs fill the broker's and the node's disks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pulse.config import Settings
from pulse.connect.elasticsearch import EsConnection
from pulse.kafkaio import admin_client

BENCH_TOPICS = ("pulse.bench.", "bench-", "repartition__bench-", "changelog__bench-")
BENCH_INDICES = "bench-*"


def _topics(admin: AdminClient) -> set[str]:
    return {t for t in admin.list_topics(timeout=10).topics if t.startswith(BENCH_TOPICS)}


def _indices(es: EsConnection) -> set[str]:
    from elasticsearch import ApiError, TransportError

    with suppress(ApiError, TransportError):
        return set(es.client().indices.get(index=BENCH_INDICES, expand_wildcards="all").body)
    return set()


@contextmanager
def scratch(settings: Settings) -> Iterator[None]:
    """Delete the benchmark topics and indices created while the block runs (also on errors and Ctrl-C)."""
    admin = admin_client(settings.bootstrap)
    topics, indices = _topics(admin), _indices(settings.es)
    try:
        yield
    finally:
        created = sorted(_topics(admin) - topics)
        if created:
            for future in admin.delete_topics(created, operation_timeout=30).values():
                with suppress(KafkaException):
                    future.result(timeout=60)
        new_indices = sorted(_indices(settings.es) - indices)
        if new_indices:

            settings.es.client().indices.delete(index=",".join(new_indices), ignore_unavailable=True)
