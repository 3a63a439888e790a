"""Shared fixtures: the real local stack that `make test` starts, and per-test Kafka topics."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pulse.config import Settings
from pulse.kafkaio import broker_reachable
from pulse.stack.elasticsearch import cluster_status
from tests.live import Stage
from tests.names import made_here, unique


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_topics(settings: Settings) -> Iterator[None]:
    """Delete the topics the session's tests made (aggregator changelogs, side topics, ...): on a long-lived local
    broker every run would otherwise leave a few hundred partitions behind and slow it down. Only those named
    after a name a test took from :func:`tests.names.unique`: anything else on the broker is not ours."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    up = broker_reachable(settings.bootstrap, timeout=5)
    before = set(admin.list_topics(timeout=10).topics) if up else set()
    yield
    if not up:
        return
    made = [t for t in admin.list_topics(timeout=10).topics if t not in before and made_here(t)]
    if made:
        for fut in admin.delete_topics(made, operation_timeout=60).values():
            with contextlib.suppress(Exception):  # best-effort cleanup
                fut.result(timeout=60)


@pytest.fixture(scope="session")
def bootstrap(settings: Settings) -> str:
    if not broker_reachable(settings.bootstrap, timeout=10):
        pytest.fail(f"Kafka is not reachable at {settings.bootstrap}; run the suite with `make test`")
    return settings.bootstrap


@pytest.fixture(scope="session")
def es_url(settings: Settings) -> str:
    if cluster_status(settings.es_url, timeout=10) not in {"green", "yellow"}:
        pytest.fail(f"Elasticsearch is not reachable at {settings.es_url}; run the suite with `make test`")
    return settings.es_url


@pytest.fixture
def new_topic(bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics for one test and delete them afterwards."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    made: list[str] = []

    def make(partitions: int = 1, prefix: str = "test", config: dict[str, str] | None = None) -> str:
        name = unique(prefix, 10)
        fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name]
        fut.result(timeout=30)
        made.append(name)
        # the create call returns once the controller has the topic; the broker's metadata can lag behind it,
        # and a test that lists topics right away (the benchmarks' scratch snapshot) would miss it
        deadline = time.monotonic() + 10
        while name not in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
            time.sleep(0.05)
        return name

    yield make
    if made:
        for fut in admin.delete_topics(made).values():
            with contextlib.suppress(Exception):  # best-effort cleanup
                fut.result(timeout=30)


@pytest.fixture
def index_prefix(es_url: str) -> Iterator[str]:
    """A private set of Pulse indices for one test, deleted afterwards."""
    from elasticsearch import Elasticsearch

    name = unique("t").replace("-", "")
    yield name
    Elasticsearch(es_url).indices.delete(index=f"{name}-*", ignore_unavailable=True)


@pytest.fixture
def stages() -> Iterator[list[Stage]]:
    """`pulse` commands a test starts in the background (`tests.live.Stage`), stopped when it ends."""
    running: list[Stage] = []
    yield running
    for stage in reversed(running):
        stage.stop()
