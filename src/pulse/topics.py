"""The Kafka topics Pulse owns, their settings, and idempotent creation for `pulse setup`."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pulse.errors import BrokerUnavailable, PulseError
from pulse.kafkaio import admin_client, broker_problem


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


INPUT_RETENTION_HOURS = 168


def retention_needed_ms(horizon_ms: int) -> int:
    """How long the input must be kept for a correction horizon: a third longer, so that restore and `pulse verify`
    read the first copy of every event that still counts, whenever they run within that margin."""
    return horizon_ms * 4 // 3
"""How long the input topic keeps records unless told otherwise (a week)."""


def dead_letter_topic(topic: str) -> str:
    """Where invalid input records of ``topic`` go, with their reason."""
    return f"{topic}.dlq"


def late_topic(topic: str) -> str:
    """Where late input records of ``topic`` go."""
    return f"{topic}.late"


def input_topics(topic: str, partitions: int, retention_hours: float = INPUT_RETENTION_HOURS) -> list[TopicSpec]:
    """The input topic and its side outputs (dead letters, late events), all with the same partitioning."""
    retention = str(int(retention_hours * 3_600_000))
    base = {"retention.ms": retention, "cleanup.policy": "delete"}
    # The broker stamps each input record with its own clock: event times are checked against a clock that no
    # producer controls (a far-future event is dead-lettered; a partition's event clock never passes it).
    stamped = base | {"message.timestamp.type": "LogAppendTime"}
    return [
        TopicSpec(topic, partitions, stamped),
        TopicSpec(dead_letter_topic(topic), partitions, base),
        TopicSpec(late_topic(topic), partitions, base),
    ]


_REACHED: set[str] = set()  # brokers this process already reached (start-up runs several checks in a row)


def replicas_for(brokers: int) -> int:
    """How many replicas Pulse gives a topic on a cluster of ``brokers``: three where it can."""
    return max(1, min(3, brokers))


def min_insync_for(replicas: int) -> int:
    """Replicas that must hold a write before it is acknowledged: two of three, so that one broker may be lost
    and nothing acknowledged is."""
    return 2 if replicas >= 3 else 1


def _replication(admin: AdminClient, timeout: float) -> tuple[int, int]:
    """(brokers in the cluster, replicas wanted per topic)."""
    brokers = len(admin.list_topics(timeout=timeout).brokers)
    return brokers, replicas_for(brokers)


def require_broker(bootstrap: str) -> None:
    if bootstrap in _REACHED:
        return
    problem = broker_problem(bootstrap, timeout=5.0)
    if problem:
        raise BrokerUnavailable(problem)
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
    admin = admin_client(bootstrap)
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
    """Create missing topics, replicated as the cluster allows (:func:`replicas_for`); report existing ones whose
    partitions (or, if asked, settings) differ.

    Returns (topic, "created" | "exists" | …) pairs, an existing topic with fewer replicas than the cluster
    allows saying so; raises PulseError listing every difference found.
    """
    require_broker(bootstrap)
    admin = admin_client(bootstrap)
    existing = admin.list_topics(timeout=timeout).topics
    brokers, replicas = _replication(admin, timeout)
    insync = {"min.insync.replicas": str(min_insync_for(replicas))}
    results: list[tuple[str, str]] = []
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics([NewTopic(s.name, s.partitions, replicas, config=insync | s.config)
                                       for s in missing])
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
        state = "exists"
        if compare_config:
            actual = configs[ConfigResource(ConfigResource.Type.TOPIC, spec.name)].result(timeout=timeout)
            differ = {key: want for key, want in spec.config.items()
                      if (actual[key].value if key in actual else None) != want}
            if differ.keys() <= ALTERABLE:
                if differ:
                    _alter(admin, spec.name, differ, timeout)
                    state = "altered: " + ", ".join(f"{k}={v}" for k, v in differ.items())
            else:
                problems.extend(f"{spec.name}: {key}={actual[key].value if key in actual else None} (wanted {want})"
                                for key, want in differ.items())
        have_replicas = min((len(p.replicas) for p in existing[spec.name].partitions.values()), default=0)
        if have_replicas < replicas:
            state += (f" (under-replicated: {have_replicas} replica(s) where a {brokers}-broker cluster allows "
                      f"{replicas}; kafka-reassign-partitions can add them)")
        results.append((spec.name, state))
    if problems:
        raise PulseError("existing topics differ from the requested settings: " + "; ".join(problems)
                         + " (delete and re-create them, or pass matching --partitions/--retention-hours)")
    return results


def timestamp_type(bootstrap: str, topic: str, timeout: float = 10.0) -> str | None:
    """``CreateTime`` (the producer's clock) or ``LogAppendTime`` (the broker's); None if it cannot be read."""
    admin = admin_client(bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout=timeout)
    except KafkaException:
        return None
    entry = entries.get("message.timestamp.type")
    return entry.value if entry is not None else None


ALTERABLE = frozenset({"message.timestamp.type"})
"""Settings `pulse setup` changes in place on an existing topic: they apply to new records and rewrite nothing."""


def _alter(admin: AdminClient, topic: str, config: dict[str, str], timeout: float) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
    try:
        for fut in admin.incremental_alter_configs([resource]).values():
            fut.result(timeout=timeout)
    except KafkaException as exc:
        raise PulseError(f"changing {', '.join(config)} of topic {topic} failed: {exc.args[0].str()}") from None


def changelog_topic(group: str) -> str:
    return f"{group}.changelog"


def aggregates_topic(group: str) -> str:
    return f"{group}.aggregates"


def decisions_topic(group: str) -> str:
    """Timing decisions (idle partitions, forwarded records taken), for `pulse verify`: see aggregate.decisions."""
    return f"{group}.decisions"


def repartition_topic(group: str) -> str:
    """Input records not keyed by user id, forwarded to the partition that owns their user, and every partition's
    watermark: see aggregate.repartition."""
    return f"{group}.repartition"


def store_dead_letter_topic(group: str) -> str:
    """Documents Elasticsearch refused for good (a mapping error), with the error, from a writer of ``group``."""
    return f"{group}.store-dlq"


def topic_exists(bootstrap: str, topic: str) -> bool:
    require_broker(bootstrap)
    admin = admin_client(bootstrap)
    return topic in admin.list_topics(timeout=10).topics


def store_group(group: str) -> str:
    """The consumer group of the Elasticsearch writer projecting an aggregator group's documents."""
    return f"{group}-store"


def aggregator_topics(group: str, partitions: int) -> list[TopicSpec]:
    """The aggregator's compacted changelog (its state) and aggregates output (documents), and its decisions (a
    few records per quiet spell, kept as long as the topic exists), per group.

    All are partitioned like the input: record i of input partition p only ever writes partition p, except that
    a record of p whose user another partition q owns is forwarded to partition q of the repartition topic.
    """
    compact = {"cleanup.policy": "compact", "segment.ms": str(10 * 60_000), "min.cleanable.dirty.ratio": "0.2"}
    # Keep superseded aggregates for an hour so a lagging projection still sees every final document.
    aggregates = compact | {"min.compaction.lag.ms": str(3_600_000)}
    decisions = {"cleanup.policy": "delete", "retention.ms": "-1"}
    # forwarded records are kept as long as the input's (a week by default), for `pulse verify`
    repartition = {"cleanup.policy": "delete", "retention.ms": str(INPUT_RETENTION_HOURS * 3_600_000)}
    return [TopicSpec(changelog_topic(group), partitions, compact),
            TopicSpec(aggregates_topic(group), partitions, aggregates),
            TopicSpec(decisions_topic(group), partitions, decisions),
            TopicSpec(repartition_topic(group), partitions, repartition)]
