"""`pulse bench failover`: how long a partition's aggregates stop updating when its aggregator is SIGKILLed and a
second instance takes over, at the state size of `pulse bench memory` (about a million users).

Events are pre-produced over a large user population. Aggregator a starts alone, then b joins (so a's partitions
are known from the group's members); both and the writer work through the backlog until every document they
published is in Elasticsearch (user documents go on being published within their budget, as in any live
pipeline). Live traffic then flows for a while, a is SIGKILLed, and each partition a owned is watched in
Elasticsearch as the dashboard reads it: its dark time runs from the SIGKILL to the first partition document
flushed after it being searchable. b's log gives each partition's restore time and keys. Default settings
throughout: the group notices the dead member after its session timeout, which is part of the dark time.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from elasticsearch import Elasticsearch

from pulse import kafkaio
from pulse.aggregate.group import session_timeout_s
from pulse.bench.memory import CountingUsers
from pulse.bench.scrape import metric
from pulse.bench.stage import Stage, wait_for
from pulse.config import Settings
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.producer import EventProducer, RunLimits
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.observe import metrics
from pulse.stack.private import free_port
from pulse.store.indices import alias
from pulse.topics import aggregates_topic, ensure_topics, input_topics, store_group

PARTITIONS = 6
STATE_BYTES = metrics.STATE_BYTES.describe()[0].name
LIVE_BEFORE_S = 15.0  # live traffic before the SIGKILL, as in a pipeline that has been running
RESTORED = re.compile(r"partition (\d+) restored: (\d+) keys in ([\d.]+)s")


@dataclass(frozen=True)
class PartitionFailover:
    partition: int
    dark_s: float | None  # SIGKILL → its first new document searchable (None: not within the wait)
    restore_s: float | None  # b's restore of its state from the changelog
    keys: int | None  # state keys restored


@dataclass
class FailoverResult:
    events: int
    users: int  # distinct users in the input, so in the state
    session_timeout_s: float
    rate: float
    partitions: list[PartitionFailover] = field(default_factory=list)
    restored_bytes: int | None = None  # a's state before the SIGKILL (its pulse_state_bytes): what b restores

    @property
    def worst_dark_s(self) -> float | None:
        darks = [p.dark_s for p in self.partitions]
        return None if not darks or None in darks else max(d for d in darks if d is not None)


def run(settings: Settings, events: int, users: int, rate: float, logs: Path,
        say: Callable[[str], None] = lambda _m: None, timeout: float = 1800) -> FailoverResult:
    """One failover at the state ``events`` over ``users`` build (topics and indices are the caller's to delete)."""
    tag = f"bench-failover-{uuid.uuid4().hex[:6]}"
    prefix = tag  # under bench-*, which the scratch deletes
    env = dict(os.environ) | {"PULSE_TOPIC": tag, "PULSE_GROUP": tag, "PULSE_INDEX_PREFIX": prefix}
    ensure_topics(settings.bootstrap, input_topics(tag, PARTITIONS, 24))
    say(f"producing {events:,} events over {users:,} users")
    traffic = Traffic(TrafficConfig(seed=23, users=users, items_per_session=1.0, open_sessions=5_000, rate=5_000,
                                    start_ms=int(time.time() * 1000) - events // 5))
    records = CountingUsers(Chaos(traffic, ChaosConfig()))
    EventProducer(settings.bootstrap, tag, PARTITIONS).run(records, RunLimits(count=events), lambda: 0.0)  # type: ignore[arg-type]
    admin = kafkaio.admin_client(settings.bootstrap)
    result = FailoverResult(events, len(records.users), session_timeout_s(settings.bootstrap, tag), rate)
    started: list[Stage] = []
    try:
        ports = {name: free_port() for name in ("a", "b")}
        a = Stage(env, logs / "aggregate-a.log", "aggregate", "--instance", "a", "--metrics-addr",
                  f"127.0.0.1:{ports['a']}")
        started.append(a)
        wait_for(lambda: len(_members(admin, tag) or {}) == 1, 120, "aggregator a to join", started)
        first = set(_members(admin, tag) or {})
        b = Stage(env, logs / "aggregate-b.log", "aggregate", "--instance", "b", "--metrics-addr",
                  f"127.0.0.1:{ports['b']}")
        started.append(b)
        started.append(Stage(env, logs / "store.log", "store"))
        wait_for(lambda: len(_members(admin, tag) or {}) == 2, 120, "aggregator b to join", started)
        owned = {member: parts for member, parts in (_members(admin, tag) or {}).items() if member in first}
        victim = sorted(next(iter(owned.values())))
        say(f"aggregating and storing the backlog (a owns partitions {victim})")
        wait_for(lambda: _caught_up(settings, tag), timeout, "the aggregators and the writer to catch up", started)
        es = settings.es.client()
        live = Stage(env, logs / "generate.log", "generate", "--rate", str(rate), "--no-progress")
        started.append(live)
        wait_for(lambda: _flushed_after(es, prefix, victim, time.time() * 1000 - 1500) == set(victim), 60,
                 "live aggregates of a's partitions", started)
        # what b will restore: a's state, the largest a reports (a partition being routed is left out of a sample)
        state = []
        live_until = time.monotonic() + LIVE_BEFORE_S
        while time.monotonic() < live_until:
            state.append(metric(ports["a"], STATE_BYTES) or 0)
            time.sleep(0.5)
        result.restored_bytes = int(max(state))
        say(f"SIGKILL aggregator a ({result.users:,} users in the state)")
        killed_ms = time.time() * 1000
        killed = time.monotonic()
        a.kill()
        seen: dict[int, float] = {}
        while len(seen) < len(victim) and time.monotonic() - killed < 300:
            for p in _flushed_after(es, prefix, victim, killed_ms) - seen.keys():
                seen[p] = time.monotonic() - killed
            time.sleep(0.05)
        restored = _restores(logs / "aggregate-b.log")
        result.partitions = [PartitionFailover(p, seen.get(p), *restored.get(p, (None, None))) for p in victim]
    finally:
        for stage in reversed(started):
            stage.stop()
    return result


def _members(admin: object, group: str) -> dict[str, set[int]] | None:
    return kafkaio.group_assignment(admin, group, group)  # type: ignore[arg-type]


def _caught_up(settings: Settings, group: str) -> bool:
    """The aggregators have committed the whole input, and the writer every document they published."""
    for name, topic in ((group, group), (store_group(group), aggregates_topic(group))):
        lookup = kafkaio.lag_reader(settings.bootstrap, name)
        try:
            if kafkaio.group_lag(lookup, topic) != 0:
                return False
        finally:
            lookup.close()
    return True


def _flushed_after(es: Elasticsearch, prefix: str, partitions: list[int], after_ms: float) -> set[int]:
    """Which of ``partitions`` have a partition document flushed after ``after_ms``, as a search finds them."""
    found = es.search(index=alias("partitions", prefix), size=len(partitions), query={"bool": {"filter": [
        {"terms": {"partition": partitions}}, {"range": {"flushed_at": {"gt": int(after_ms)}}}]}},
        source=["partition"])
    return {int(hit["_source"]["partition"]) for hit in found["hits"]["hits"]}


def _restores(log: Path) -> dict[int, tuple[float, int]]:
    """(seconds, keys) of each partition's latest restore in an aggregator's log."""
    out: dict[int, tuple[float, int]] = {}
    for m in RESTORED.finditer(log.read_text(errors="replace") if log.exists() else ""):
        out[int(m.group(1))] = (float(m.group(3)), int(m.group(2)))
    return out
