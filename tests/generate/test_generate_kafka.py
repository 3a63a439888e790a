"""`pulse setup` and `pulse generate` against the real broker: delivery, partitioning, ledger, errors."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from pulse.generate.chaos import INVALID_KINDS, Tag
from pulse.generate.ledger import read_ledger
from pulse.generate.partitioner import partition_for
from pulse.generate.summary import read_summaries
from tests.cli_helpers import one_line_error, run_pulse
from tests.names import unique


def read_topic(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int, bytes, bytes, int]]:
    """Every record of the topic as (partition, offset, key, value, timestamp), read to the end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("read", 6),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + 120
    done = {p for p, end in ends.items() if end == 0}
    while len(done) < partitions and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error():
                continue
            out.append((msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
    consumer.close()
    return out


def test_setup_is_idempotent_and_reports_differences(bootstrap: str) -> None:
    topic = unique("test-setup")
    try:
        first = run_pulse("setup", "--topic", topic, "--partitions", "4")
        assert first.returncode == 0, first.stderr
        mine = [ln for ln in first.stdout.splitlines() if ln.startswith(topic)]
        assert len(mine) == 3 and all(ln.endswith("created") for ln in mine)
        assert "pulse-windows" in first.stdout  # the Elasticsearch templates and aliases too
        again = run_pulse("setup", "--topic", topic, "--partitions", "4")
        assert again.returncode == 0
        assert all(ln.endswith("exists") for ln in again.stdout.splitlines() if ln.startswith(topic))
        short = run_pulse("setup", "--topic", topic, "--retention-hours", "48")  # the horizon is 3 days
        assert "--retention-hours 48 keeps input for less than 4d, a third more than --correct-within 3d" in \
            one_line_error(short)
        differ = run_pulse("setup", "--topic", topic, "--partitions", "2", "--retention-hours", "1",
                           "--correct-within", "1m")
        line = one_line_error(differ)
        assert f"{topic}: 4 partitions (wanted 2)" in line and "retention.ms=604800000 (wanted 3600000)" in line
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for fut in admin.delete_topics([topic, f"{topic}.dlq", f"{topic}.late"]).values():
            fut.result(timeout=30)


def test_generate_delivers_everything_to_the_java_partition_and_the_ledger_matches(
        bootstrap: str, new_topic, tmp_path: Path) -> None:
    topic = new_topic(partitions=6)
    ledger_path = tmp_path / "ledger.gz"
    count = 30_000
    proc = run_pulse("generate", "--topic", topic, "--rate", "0", "--count", str(count), "--seed", "11",
                     "--ledger", str(ledger_path), "--late-fraction", "0.03", "--duplicate-fraction", "0.03",
                     "--invalid-fraction", "0.05", "--disorder-fraction", "0.02", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    ledger = read_ledger(ledger_path)
    assert ledger.trailer["delivered"] == count and ledger.trailer["failed"] == 0
    assert len(ledger) == count

    on_topic = read_topic(bootstrap, topic, 6)
    assert len(on_topic) == count
    assert sorted(on_topic) == sorted((r.partition, r.offset, r.key, r.value, r.send_ms) for r in ledger)
    for partition, _, key, _, _ in on_topic:
        assert partition == partition_for(key, 6)
    tags = {r.tag for r in ledger}
    assert set(INVALID_KINDS) <= tags and {Tag.VALID, Tag.LATE, Tag.DUPLICATE, Tag.DISORDERED} <= tags


def test_paced_generation_follows_the_rate(new_topic) -> None:
    topic = new_topic(partitions=2)
    t0 = time.monotonic()
    proc = run_pulse("generate", "--topic", topic, "--rate", "500", "--duration", "4", "--no-progress")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    produced = int(next(ln for ln in proc.stderr.splitlines() if "produced" in ln).split("│")[2].replace(",", ""))
    assert 1500 <= produced <= 2600, produced
    assert elapsed < 20


def test_unreachable_broker_fails_fast_with_one_line() -> None:
    env = dict(os.environ) | {"PULSE_BOOTSTRAP": "127.0.0.1:1"}
    t0 = time.monotonic()
    proc = run_pulse("generate", "--count", "10", "--partitions", "6", env=env, timeout=60)
    assert time.monotonic() - t0 < 20
    line = one_line_error(proc)
    assert "Kafka is not reachable at 127.0.0.1:1" in line


def test_each_run_appends_its_summary_for_programs(bootstrap: str, new_topic, tmp_path: Path) -> None:
    """`--summary-json`: one JSON line a run, its counts those of the topic and of the ledger's tags."""
    topic = new_topic(partitions=2)
    summaries = tmp_path / "runs.jsonl"
    for seed, count in ((1, 700), (2, 300)):
        proc = run_pulse("generate", "--topic", topic, "--rate", "0", "--count", str(count), "--seed", str(seed),
                         "--ledger", str(tmp_path / f"ledger-{seed}.gz"), "--invalid-fraction", "0.1",
                         "--summary-json", str(summaries), "--no-progress")
        assert proc.returncode == 0, proc.stderr
    runs = read_summaries(summaries)
    assert [(r["produced"], r["delivered"], r["failed"]) for r in runs] == [(700, 700, 0), (300, 300, 0)]
    assert len(read_topic(bootstrap, topic, 2)) == 1000
    tags = Counter(r.tag.name.lower() for r in read_ledger(tmp_path / "ledger-1.gz"))
    assert runs[0]["by_tag"] == dict(tags)
