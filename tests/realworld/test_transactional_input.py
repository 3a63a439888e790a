"""Case 6 of the real world: input written by a transactional producer (an exactly-once app upstream: Kafka
Streams, Flink's Kafka sink, a plain client with a transactional id). Every transaction ends in a marker that no
consumer ever sees, and aborted transactions leave records a read_committed consumer skips. The aggregator must
still read each partition to its end: commit past the markers, stop a batch run, count no aborted event."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pulse.kafkaio import end_offsets
from tests.aggregate.harness import read_latest_docs, run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.live import Stage, metric, wait_for
from tests.names import unique
from tests.realworld.plain import event, now_ms
from tests.realworld.private_stack import free_port

PARTITIONS = 4
ONLY_ABORTED = 3  # a partition that never gets a committed record: just an aborted transaction and its marker


def _write_in_transactions(bootstrap: str, topic: str, partitions: int = PARTITIONS,
                           committed_to: int = ONLY_ABORTED) -> list[dict]:
    """Committed and aborted transactions, ending in an aborted one; committed events go to the first
    ``committed_to`` partitions; returns the committed events."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("upstream-app")})
    producer.init_transactions(30)
    base, committed = now_ms() - 300_000, []
    for t, commit in enumerate((True, False, True, True, False)):
        events = [event(n, base + 200 * n) if commit else event(n, base + 200 * n, user_id=f"ghost{n}")
                  for n in range(200 * t, 200 * t + 200)]
        producer.begin_transaction()
        for n, e in enumerate(events):  # partitions chosen as an app's own partitioner would
            partition = n % committed_to if commit else n % partitions
            producer.produce(topic, orjson.dumps(e), e["user_id"].encode(), partition)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
            committed += events
        else:
            producer.abort_transaction(30)
    return committed


def _committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = reader.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        reader.close()


def test_input_from_a_transactional_producer_is_read_to_its_end(bootstrap, es_url, new_topic, index_prefix) -> None:
    topic, group = new_topic(partitions=PARTITIONS, prefix="txin"), unique("g")
    committed = _write_in_transactions(bootstrap, topic)

    run_aggregator_until_idle(topic, group, timeout=120)  # waited for ever on the markers before

    ends = end_offsets(AdminClient({"bootstrap.servers": bootstrap}), topic, list(range(PARTITIONS)))
    assert _committed_offsets(bootstrap, group, topic) == ends  # past every marker and aborted record
    docs = read_latest_docs(bootstrap, f"{group}.aggregates")
    assert sum(d["accepted"] for i, d in docs.items() if i.startswith("partition:")) == len(committed)
    users = {d["user_id"] for i, d in docs.items() if i.startswith("user:")}
    assert users == {e["user_id"] for e in committed}  # no event of an aborted transaction counted

    run_store(topic, group, index_prefix)
    where = ("--topic", topic, "--group", group, "--index-prefix", index_prefix)
    verify = run_pulse("verify", *where)
    assert verify.returncode == 0, verify.stdout + verify.stderr



def test_windows_up_to_a_time_are_reached_on_input_that_ends_in_markers(bootstrap, es_url, new_topic,
                                                                        index_prefix) -> None:
    """`pulse verify --to`: the aggregator's last decisions sit past the markers, where no record comes to apply
    them in the walk; the walk applies them once its input has run out."""
    topic, group = new_topic(partitions=3, prefix="txto"), unique("g")
    committed = _write_in_transactions(bootstrap, topic, partitions=3, committed_to=3)
    run_aggregator_until_idle(topic, group, timeout=120)
    run_store(topic, group, index_prefix)
    until = (committed[-1]["ts"] - 60_000) // 10_000 * 10_000  # well behind the newest event, less the grace
    bounded = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix,
                        "--to", str(until), "--json")
    assert bounded.returncode == 0, bounded.stdout + bounded.stderr
    assert json.loads(bounded.stdout)["range"]["compared_up_to"] == until


def test_a_follower_checks_live_transactional_input_up_to_its_last_event(
        bootstrap, es_url, new_topic, index_prefix, tmp_path: Path, stages: list[Stage],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`pulse verify --follow` beside a live pipeline: once the input stops, the aggregator's decisions that close
    the last windows sit past the last transaction's marker, and the follower applies them all the same."""
    monkeypatch.setenv("PULSE_GRACE", "5s")
    monkeypatch.setenv("PULSE_IDLE_TIMEOUT", "2s")
    topic, group, port = new_topic(partitions=3, prefix="txfo"), unique("g"), free_port()
    where = ("--topic", topic, "--group", group)
    stages.append(Stage(tmp_path / "aggregate.log", "aggregate", *where))
    stages.append(Stage(tmp_path / "store.log", "store", *where, "--index-prefix", index_prefix))
    follow = Stage(tmp_path / "verify.log", "verify", "--follow", *where, "--index-prefix", index_prefix,
                   "--state-file", str(tmp_path / "verify.json"), "--metrics-addr", f"127.0.0.1:{port}")
    stages.append(follow)

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("upstream-app")})
    producer.init_transactions(30)
    last_ts, n, deadline, commit = 0, 0, time.monotonic() + 25, True
    while time.monotonic() < deadline or commit:  # every fourth aborted, the last one too
        commit = n // 10 % 4 != 3
        producer.begin_transaction()
        for _ in range(10):  # live events, spread by the app's own partitioner: most are forwarded
            e = event(n, now_ms()) if commit else event(n, now_ms(), user_id=f"ghost{n}")
            producer.produce(topic, orjson.dumps(e), e["user_id"].encode(), n % 3)
            last_ts = max(last_ts, e["ts"]) if commit else last_ts
            n += 1
        producer.flush(30)
        producer.commit_transaction(30) if commit else producer.abort_transaction(30)
        time.sleep(0.1)

    def checked_past_the_last_event() -> bool:
        return metric(port, "pulse_verify_checked_up_to_ms") > last_ts

    wait_for(checked_past_the_last_event, 120, "windows checked past the last event", follow.text)
    assert metric(port, "pulse_verify_windows_checked_total") > 10, follow.text()[-3000:]
    assert metric(port, "pulse_verify_mismatches_total") == 0, follow.text()[-3000:]
    docs = read_latest_docs(bootstrap, f"{group}.aggregates")
    assert not any(d.get("user_id", "").startswith("ghost") for d in docs.values())  # no aborted event counted
