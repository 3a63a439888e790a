"""Beyond one broker: Pulse on a secured three-node KRaft cluster (`pulse stack up --brokers 3 --secure`: SASL_SSL
between clients and brokers and among the brokers). Every topic is
replicated three ways with two in sync, and the pipeline rides out a SIGKILL of the broker coordinating the
aggregator's transactions: every stage stays up, the topic holds what the generator counted as delivered, and
`pulse verify` is exact. With two of three down, everything waits (the generator says why, once) and resumes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pulse.config import Settings
from pulse.stack import manager
from pulse.stack.kafka import node_name
from pulse.stack.leaders import TRANSACTION_STATE, transaction_coordinator, under_replicated
from tests.names import unique
from tests.realworld.private_stack import PrivateStack, private_stack
from tests.realworld.pulse_run import assert_delivered_and_exact, children, pulse_run, wait


@pytest.fixture(scope="module")
def cluster(settings: Settings) -> Iterator[PrivateStack]:
    with private_stack(settings, "test-cluster", brokers=3, kafka_heap="384m", secure=True) as s:
        yield s


def _admin(cluster: PrivateStack) -> AdminClient:
    """A plain client with the cluster's credentials."""
    return AdminClient(cluster.kafka_client)


def _under_replicated(admin: AdminClient) -> int | None:
    """Partitions with a replica out of sync, or None while that cannot be told (a broker just died)."""
    try:
        return under_replicated(admin)
    except KafkaException:
        return None


def _replicas(admin: AdminClient, topic: str) -> set[int]:
    """How many replicas the partitions of ``topic`` have (one number each, as a set)."""
    return {len(p.replicas) for p in admin.list_topics(topic, timeout=10).topics[topic].partitions.values()}


def _coordinator(admin: AdminClient, transactional_id: str) -> int | None:
    """The coordinator's broker id (-1: no leader yet), or None while that cannot be told."""
    try:
        return transaction_coordinator(admin, transactional_id)
    except (KafkaException, LookupError):
        return None


def _config(admin: AdminClient, topic: str, key: str) -> str:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return str(admin.describe_configs([resource])[resource].result(10)[key].value)


def test_three_nodes_serve_and_every_topic_pulse_makes_has_three_replicas_two_in_sync(cluster: PrivateStack) -> None:
    rows = manager.status(cluster.settings)
    assert [r.name for r in rows if r.healthy] == ["kafka", "kafka-2", "kafka-3", "elasticsearch"], rows
    assert len(cluster.env["PULSE_BOOTSTRAP"].split(",")) == 3
    admin = _admin(cluster)
    assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]

    tag = unique("repl")
    done = cluster.pulse("setup", "--topic", tag)
    assert done.returncode == 0, done.stderr
    for topic in (tag, f"{tag}.dlq", f"{tag}.late"):
        assert _replicas(admin, topic) == {3}, topic
        assert _config(admin, topic, "min.insync.replicas") == "2", topic

    # a topic a plain client made with one replica is named for what it lacks, and still used
    plain = unique("plain")
    admin.create_topics([NewTopic(plain, 6, 1)])[plain].result(10)
    done = cluster.pulse("setup", "--topic", plain)
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith(plain + " "))
    assert "under-replicated: 1 replica(s) where a 3-broker cluster allows 3" in line, done.stdout


@pytest.mark.slow
def test_the_pipeline_rides_out_a_sigkill_of_its_transaction_coordinator_and_two_brokers_down(
        cluster: PrivateStack, tmp_path: Path) -> None:
    with pulse_run(cluster, tmp_path, "coord", rate=500, PULSE_INSTANCE="a") as run:
        wait(lambda: run.accepted() > 2000, 120, "the first aggregates")
        stages = children(run.proc.pid)
        admin = _admin(cluster)
        coordinator = transaction_coordinator(admin, f"{run.env['PULSE_GROUP']}-a")
        killed = time.monotonic()
        cluster.kill(node_name(coordinator))
        # the aggregator goes on while the broker is dead: another one coordinates, the partitions it led have
        # leaders elsewhere, and two replicas in sync are enough to acknowledge
        wait(lambda: _coordinator(admin, f"{run.env['PULSE_GROUP']}-a") not in (None, -1, coordinator), 60,
             "another broker to lead the transaction state partition")
        # within two minutes: a send of the input positions to the transaction can hang on the moved coordinator
        # until the aggregator's deadline (librdkafka issues 5456, 5511), then a new producer reloads its state
        run.progresses(2000, 120, "aggregates with the coordinator's broker dead")
        wait(lambda: (_under_replicated(admin) or 0) > 0, 30, "the dead broker's replicas to leave the in-sync sets")
        time.sleep(max(0.0, 30 - (time.monotonic() - killed)))
        cluster.start()
        run.progresses(2000, 90, "aggregates after the broker came back")
        wait(lambda: _under_replicated(admin) == 0, 120, "every replica back in sync")
        run.stages_unchanged(stages)

        # two of three down: no quorum, and one replica in sync where a write needs two; every stage waits
        def said(what: str) -> int:
            return len(re.findall(what, run.stage_log("generate", 10**6)))

        waiting, resumed = "WARNING pulse.generate: Kafka .*; waiting", "Kafka acknowledges again after"
        before = said(waiting), said(resumed)
        for node in ("kafka-2", "kafka-3"):
            cluster.kill(node)
        time.sleep(25)
        assert said(waiting) == before[0] + 1, run.stage_log("generate")  # one line, not one a retry
        cluster.start()
        run.progresses(2000, 120, "aggregates after two brokers came back")
        assert said(resumed) > before[1]
        assert run.proc.poll() is None, run.log()
        run.stages_unchanged(stages)
    assert_delivered_and_exact(run)
    assert _replicas(_admin(cluster), TRANSACTION_STATE) == {3}
