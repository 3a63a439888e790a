"""How `ensure_topics` reports a topic create request, against the real broker."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pulse.errors import PulseError
from pulse.topics import TopicSpec, creation, ensure_topics
from tests.names import unique


def test_a_topic_created_by_someone_else_meanwhile_is_reported_as_existing(
        bootstrap: str, new_topic: Callable[..., str]) -> None:
    """Two instances starting together both list the topic as missing; the one whose request loses the race
    gets TOPIC_ALREADY_EXISTS from the broker and must say "exists", not "created"."""
    name = new_topic(partitions=2)
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive: its requests die with it
    late = admin.create_topics([NewTopic(name, 2, 1)])[name]
    assert creation(name, late, 30) == "exists"


def test_other_create_failures_raise_one_line(bootstrap: str) -> None:
    name = unique("test", 10)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    impossible = admin.create_topics([NewTopic(name, 1, 3)])[name]
    with pytest.raises(PulseError, match=f"creating topic {name} failed: .*replication factor"):
        creation(name, impossible, 30)


def test_ensure_topics_creates_once_then_finds_it(bootstrap: str) -> None:
    name = unique("test", 10)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        assert ensure_topics(bootstrap, [TopicSpec(name, 2, {})]) == [(name, "created")]
        assert ensure_topics(bootstrap, [TopicSpec(name, 2, {})]) == [(name, "exists")]
        with pytest.raises(PulseError, match=f"{name}: 2 partitions \\(wanted 3\\)"):
            ensure_topics(bootstrap, [TopicSpec(name, 3, {})])
    finally:
        admin.delete_topics([name])[name].result(timeout=30)
