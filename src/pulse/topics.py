"""The Kafka topics Pulse owns, their settings, and idempotent creation for `pulse setup`."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pulse.errors import BrokerUnavailable, PulseError
from pulse.kafkaio import QUIET_LOG, broker_reachable

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def input_topics(topic: str, partitions: int, retention_hours: float) -> list[TopicSpec]:
    """The input topic and its side outputs (dead letters, late events), all with the same partitioning."""
    retention = str(int(retention_hours * 3_600_000))
    base = {
        "retention.ms": retention,
        "cleanup.policy": "delete",
        # Record timestamps are the events' send times; a fast replay of history may run ahead of the wall clock.
        "message.timestamp.after.max.ms": str(365 * DAY_MS),
    }
    return [
        TopicSpec(topic, partitions, base),
        TopicSpec(f"{topic}.dlq", partitions, base),
        TopicSpec(f"{topic}.late", partitions, base),
    ]


_REACHED: set[str] = set()  # brokers this process already reached (start-up runs several checks in a row)


def require_broker(bootstrap: str) -> None:
    if bootstrap in _REACHED:
        return
    if not broker_reachable(bootstrap, timeout=5.0):
        raise BrokerUnavailable(f"Kafka is not reachable at {bootstrap} (is the stack up? `pulse stack up`)")
    _REACHED.add(bootstrap)


def _await_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait until every partition of the just-created topics has a leader: until then the broker refuses to
    look up their offsets, which is the first thing a consumer of a new changelog does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout).topics
        if all(name in topics and topics[name].error is None and topics[name].partitions
               and all(p.leader >= 0 for p in topics[name].partitions.values()) for name in names):
            return
        time.sleep(0.02)


def partition_count(bootstrap: str, topic: str) -> int:
    """Partitions of an existing topic, with a clear error if the broker or the topic is missing."""
    require_broker(bootstrap)
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": QUIET_LOG})
    info = admin.list_topics(topic, timeout=10).topics.get(topic)
    if info is None or info.error is not None:
        raise PulseError(f"topic {topic!r} does not exist; create it with `pulse setup`")
    return len(info.partitions)


def creation(name: str, fut: Future, timeout: float) -> str:
    """How a create request for ``name`` ended: "created", or "exists" when another process (an aggregator
    instance starting alongside) created it between our listing and our request; anything else raises."""
    try:
        fut.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise PulseError(f"creating topic {name} failed: {exc.args[0].str()}") from None
        return "exists"
    return "created"


def ensure_topics(bootstrap: str, specs: list[TopicSpec], timeout: float = 30.0,
                  compare_config: bool = True) -> list[tuple[str, str]]:
    """Create missing topics; report existing ones whose partitions (or, if asked, settings) differ.

    Returns (topic, "created" | "exists") pairs; raises PulseError listing every difference found.
    """
    require_broker(bootstrap)
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": QUIET_LOG})
    existing = admin.list_topics(timeout=timeout).topics
    results: list[tuple[str, str]] = []
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics([NewTopic(s.name, s.partitions, 1, config=s.config) for s in missing])
        results.extend((name, creation(name, fut, timeout)) for name, fut in futures.items())
        _await_leaders(admin, [s.name for s in missing], timeout)
    problems: list[str] = []
    present = [s for s in specs if s.name in existing]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in present] if compare_config else []
    configs = admin.describe_configs(resources) if resources else {}
    for spec in present:
        have_parts = len(existing[spec.name].partitions)
        if have_parts != spec.partitions:
            problems.append(f"{spec.name}: {have_parts} partitions (wanted {spec.partitions})")
        if compare_config:
            actual = configs[ConfigResource(ConfigResource.Type.TOPIC, spec.name)].result(timeout=timeout)
            for key, want in spec.config.items():
                got = actual[key].value if key in actual else None
                if got != want:
                    problems.append(f"{spec.name}: {key}={got} (wanted {want})")
        results.append((spec.name, "exists"))
    if problems:
        raise PulseError("existing topics differ from the requested settings: " + "; ".join(problems)
                         + " (delete and re-create them, or pass matching --partitions/--retention-hours)")
    return results


def changelog_topic(group: str) -> str:
    return f"{group}.changelog"


def aggregates_topic(group: str) -> str:
    return f"{group}.aggregates"


def decisions_topic(group: str) -> str:
    """Wall-clock decisions (idle partitions closing their windows), for `pulse verify`: see aggregate.decisions."""
    return f"{group}.decisions"


def topic_exists(bootstrap: str, topic: str) -> bool:
    require_broker(bootstrap)
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": QUIET_LOG})
    return topic in admin.list_topics(timeout=10).topics


def store_group(group: str) -> str:
    """The consumer group of the Elasticsearch writer projecting an aggregator group's documents."""
    return f"{group}-store"


def aggregator_topics(group: str, partitions: int) -> list[TopicSpec]:
    """The aggregator's compacted changelog (its state) and aggregates output (documents), and its decisions (a
    few records per quiet spell, kept as long as the topic exists), per group.

    All are partitioned like the input: record i of input partition p only ever writes partition p.
    """
    compact = {"cleanup.policy": "compact", "segment.ms": str(10 * 60_000), "min.cleanable.dirty.ratio": "0.2",
               "message.timestamp.after.max.ms": str(365 * DAY_MS)}
    # Keep superseded aggregates for an hour so a lagging projection still sees every final document.
    aggregates = compact | {"min.compaction.lag.ms": str(3_600_000)}
    decisions = {"cleanup.policy": "delete", "retention.ms": "-1"}
    return [TopicSpec(changelog_topic(group), partitions, compact),
            TopicSpec(aggregates_topic(group), partitions, aggregates),
            TopicSpec(decisions_topic(group), partitions, decisions)]
