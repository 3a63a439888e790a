"""Which broker of a cluster leads what: where a fault run aims its SIGKILL (the broker coordinating an
aggregator's transactions, or the one leading most of a topic's partitions), and whether every replica is back
in sync (a rolling restart takes the next broker down only then)."""

from __future__ import annotations

from collections import Counter

from confluent_kafka.admin import AdminClient

TRANSACTION_STATE = "__transaction_state"


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()`` (over UTF-16 code units, wrapping at 32 bits, signed)."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def transaction_partition(transactional_id: str, partitions: int) -> int:
    """The ``__transaction_state`` partition of a transactional id, as the broker places it (Kafka's
    ``Utils.abs(id.hashCode()) % partitions``, where ``abs`` maps the smallest int to 0)."""
    h = java_string_hash(transactional_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def transaction_coordinator(admin: AdminClient, transactional_id: str, timeout_s: float = 10.0) -> int:
    """The broker id coordinating ``transactional_id``'s transactions: the leader of its state partition."""
    topic = admin.list_topics(TRANSACTION_STATE, timeout=timeout_s).topics[TRANSACTION_STATE]
    if topic.error is not None or not topic.partitions:
        raise LookupError(f"{TRANSACTION_STATE} does not exist yet: no transaction has begun")
    return topic.partitions[transaction_partition(transactional_id, len(topic.partitions))].leader


def busiest_leader(admin: AdminClient, topic: str, timeout_s: float = 10.0) -> int:
    """The broker id leading most of ``topic``'s partitions (the lowest id among equals)."""
    partitions = admin.list_topics(topic, timeout=timeout_s).topics[topic].partitions.values()
    counts = Counter(p.leader for p in partitions if p.leader >= 0)
    return min(counts, key=lambda broker: (-counts[broker], broker))


def under_replicated(admin: AdminClient, timeout_s: float = 10.0) -> int:
    """Partitions, of every topic, with a replica outside the in-sync set."""
    topics = admin.list_topics(timeout=timeout_s).topics.values()
    return sum(len(p.isrs) < len(p.replicas) for t in topics for p in t.partitions.values())
