"""`pulse replay --from TIMESTAMP`: rebuild Pulse's indices from the input topic, then swap the aliases.

Readers keep seeing the old indices until the new generation is complete; the swap is one atomic alias
update. The aggregator group is reset first (its changelog, aggregates topic and committed offsets), because
its state describes the old history; after the replay the normal pipeline continues from where the replay
ended. Running aggregators or writers of the group must be stopped: replay refuses otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch

from pulse.aggregate.engine import Engine, EngineConfig, EngineStats
from pulse.aggregate.partition import StateConfig
from pulse.connect.elasticsearch import EsConnection
from pulse.errors import PulseError
from pulse.kafkaio import admin_client
from pulse.store import lineage
from pulse.store.indices import FAMILIES, alias, create_generation, current_generation, ensure_indices
from pulse.store.writer import ElasticsearchWriter, WriterConfig, WriterStats
from pulse.topics import aggregator_topics, ensure_topics, partition_count, store_group

DONE_IDLE_S = 1.5
"""A replay's aggregating and writing each end once nothing arrived for this long and their group has committed
its whole input."""


@dataclass(frozen=True)
class ReplayPlan:
    bootstrap: str
    es: EsConnection
    topic: str
    from_ms: int
    group: str = "pulse-aggregator"
    index_prefix: str = "pulse"
    state: StateConfig = field(default_factory=StateConfig)
    keep_old: bool = False


@dataclass
class ReplayResult:
    old_generation: int
    new_generation: int
    engine: EngineStats
    writer: WriterStats
    deleted: list[str]


def _active_groups(admin: AdminClient, groups: list[str]) -> list[str]:
    busy = []
    for group, fut in admin.describe_consumer_groups(groups).items():
        try:
            desc = fut.result(timeout=15)
        except KafkaException:
            continue  # unknown group: nothing running
        if desc.members:
            busy.append(group)
    return busy


def _reset_group(admin: AdminClient, plan: ReplayPlan, partitions: int) -> None:
    """Forget the group's state: committed offsets of aggregator and writer, changelog and aggregates topics."""
    for fut in admin.delete_consumer_groups([plan.group, store_group(plan.group)]).values():
        try:
            fut.result(timeout=30)
        except KafkaException as exc:
            if "GROUP_ID_NOT_FOUND" not in str(exc):
                raise PulseError(f"cannot reset consumer group {plan.group}: {exc.args[0].str()}") from None
    specs = aggregator_topics(plan.group, partitions)
    names = [s.name for s in specs]
    existing = [n for n in names if n in admin.list_topics(timeout=15).topics]
    if existing:
        for fut in admin.delete_topics(existing).values():
            fut.result(timeout=30)
    deadline = time.monotonic() + 60
    while any(n in admin.list_topics(timeout=15).topics for n in names):
        if time.monotonic() > deadline:
            raise PulseError(f"topics {names} were not deleted within 60s")
        time.sleep(0.5)
    for attempt in range(20):
        try:
            ensure_topics(plan.bootstrap, specs)
            return
        except PulseError:  # the broker may still be finishing the deletion
            if attempt == 19:
                raise
            time.sleep(1)


def swap_aliases(es: Elasticsearch, new_generation: int, prefix: str, keep_old: bool) -> list[str]:
    """Point every family alias at the new generation in one atomic update; delete the old indices."""
    actions: list[dict[str, object]] = []
    old: list[str] = []
    for family in FAMILIES:
        name = alias(family, prefix)
        current = list(es.indices.get_alias(name=name)) if es.indices.exists_alias(name=name) else []
        old.extend(current)
        actions.extend({"remove": {"index": index, "alias": name}} for index in current)
        actions.append({"add": {"index": f"{name}-{new_generation:06d}", "alias": name, "is_write_index": True}})
    es.indices.update_aliases(actions=actions)
    if old and not keep_old:
        es.indices.delete(index=",".join(old))
        return old
    return []


def replay(plan: ReplayPlan, stop: threading.Event, phase: Callable[[str], None] = lambda _m: None,
           on_engine: Callable[[EngineStats], None] | None = None,
           on_writer: Callable[[WriterStats], None] | None = None) -> ReplayResult:
    admin = admin_client(plan.bootstrap)
    busy = _active_groups(admin, [plan.group, store_group(plan.group)])
    if busy:
        raise PulseError(f"consumer groups {busy} have running members; stop `pulse aggregate` and `pulse store` "
                         "(or `pulse run`) before replaying")
    es = plan.es.client(request_timeout=60)
    ensure_indices(es, plan.index_prefix)
    old_gen = current_generation(es, plan.index_prefix)
    new_gen = old_gen + 1
    partitions = partition_count(plan.bootstrap, plan.topic)
    phase(f"creating generation {new_gen:06d} indices")
    create_generation(es, new_gen, plan.index_prefix)
    phase(f"resetting aggregator group {plan.group}")
    _reset_group(admin, plan, partitions)
    phase("aggregating the topic")
    engine = Engine(EngineConfig(bootstrap=plan.bootstrap, topic=plan.topic, group=plan.group, instance="replay",
                                 state=plan.state, start_ms=plan.from_ms), on_flush=on_engine)
    engine_stats = engine.run(stop, exit_when_idle_s=DONE_IDLE_S)
    if stop.is_set():
        raise PulseError("replay interrupted; the aliases still point at the old indices")
    phase("writing the new indices")
    writer = ElasticsearchWriter(WriterConfig(bootstrap=plan.bootstrap, es=plan.es, group=plan.group,
                                              input_topic=plan.topic, index_prefix=plan.index_prefix,
                                              generation=new_gen), on_flush=on_writer)
    writer_stats = writer.run(stop, exit_when_idle_s=DONE_IDLE_S)
    if stop.is_set():
        raise PulseError("replay interrupted; the aliases still point at the old indices")
    for family in FAMILIES:
        es.indices.refresh(index=f"{alias(family, plan.index_prefix)}-{new_gen:06d}")
    phase("swapping aliases")
    deleted = swap_aliases(es, new_gen, plan.index_prefix, plan.keep_old)
    lineage.record(es, plan.topic, lineage.topic_id(plan.bootstrap, plan.topic), new_gen, plan.group,
                   plan.index_prefix, replayed_from=plan.from_ms)
    return ReplayResult(old_gen, new_gen, engine_stats, writer_stats, deleted)
