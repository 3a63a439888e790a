"""The aggregator against the real broker: exact results, accounting, restart, SIGKILLs, scale-out."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from pulse.aggregate.model import OUTCOMES
from pulse.generate.chaos import INVALID_KINDS, Tag
from pulse.generate.ledger import read_ledger
from pulse.kafkaio import read_messages, read_range
from pulse.verify.diff import diff_documents
from tests.aggregate.harness import (
    CHAOS,
    expected_from_ledgers,
    generate,
    read_latest_docs,
    run_aggregator_until_idle,
    run_store,
    start_aggregator,
)
from tests.cli_helpers import run_pulse
from tests.names import unique


@pytest.fixture
def pipeline(new_topic):
    """A fresh input topic (6 partitions) with its side topics, and a fresh aggregator group."""
    topic = new_topic(partitions=6, prefix="agg")  # `pulse aggregate` creates the side topics
    return topic, unique("g")


def assert_exact(bootstrap: str, group: str, ledgers: list) -> None:
    expected = expected_from_ledgers(ledgers)
    actual = read_latest_docs(bootstrap, f"{group}.aggregates")
    diff = diff_documents(expected, actual)
    assert diff.ok, diff.summary()
    assert diff.checked > 1000


def test_results_equal_the_reference_and_every_record_is_accounted_for(bootstrap, pipeline, tmp_path: Path) -> None:
    topic, group = pipeline
    generate(topic, tmp_path / "l.gz", 60_000, "--rate", "0", *CHAOS)
    run_aggregator_until_idle(topic, group)
    ledger = read_ledger(tmp_path / "l.gz")
    assert_exact(bootstrap, group, [ledger])

    docs = read_latest_docs(bootstrap, f"{group}.aggregates")
    parts = [d for d in docs.values() if d["kind"] == "partition"]
    total = {k: sum(d[k] for d in parts) for k in OUTCOMES}
    assert sum(total.values()) == len(ledger) == 60_000
    tags = Counter(r.tag for r in ledger)
    assert total["dead_lettered"] == sum(tags[k] for k in INVALID_KINDS)  # generator's intent, independently
    dlq = [rec for p in range(6) for rec in read_range(bootstrap, f"{topic}.dlq", p, 0)]
    late = [rec for p in range(6) for rec in read_range(bootstrap, f"{topic}.late", p, 0)]
    assert len(dlq) == total["dead_lettered"] and len(late) == total["late"]
    # beyond the horizon by at least 5 s: every one too late; late within it: corrections (a few are on time
    # where the partition's clock lags)
    assert len(late) == tags[Tag.TOO_LATE] > 0
    reasons = {dict(m.headers() or [])["pulse.reason"]
               for p in range(6) for m in read_messages(bootstrap, f"{topic}.late", p, 0)}
    assert reasons == {b"beyond_horizon"}
    assert tags[Tag.LATE] * 0.5 < total["corrected"] <= tags[Tag.LATE] + tags[Tag.DISORDERED]


def test_dead_letters_carry_reason_and_source(bootstrap, pipeline, tmp_path: Path) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topic, group = pipeline
    generate(topic, tmp_path / "l.gz", 5_000, "--rate", "0", "--invalid-fraction", "0.2")
    run_aggregator_until_idle(topic, group)
    originals = {(r.partition, r.offset): r.value for r in read_ledger(tmp_path / "l.gz")}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("x", 6),
                         "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(f"{topic}.dlq", p, 0) for p in range(6)])
    reasons = Counter()
    got = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and got < 800:
        for msg in consumer.consume(1000, 1.0):
            if msg.error():
                continue
            h = {k: v.decode() for k, v in msg.headers()}
            assert originals[(int(h["pulse.source.partition"]), int(h["pulse.source.offset"]))] == msg.value()
            assert h["pulse.source.topic"] == topic and h["pulse.detail"]
            reasons[h["pulse.reason"]] += 1
            got += 1
    consumer.close()
    assert got > 800
    assert {"undecodable", "malformed_json", "wrong_type", "missing_field", "out_of_range", "future_timestamp",
            "oversized"} <= set(reasons)


def test_restart_keeps_state(bootstrap, pipeline, tmp_path: Path) -> None:
    topic, group = pipeline
    generate(topic, tmp_path / "a.gz", 20_000, "--rate", "0", *CHAOS, seed=3)
    run_aggregator_until_idle(topic, group)
    first = read_ledger(tmp_path / "a.gz")
    assert_exact(bootstrap, group, [first])
    # more traffic for the same users and windows, continuing the event clock
    start = max(r.send_ms for r in first)
    generate(topic, tmp_path / "b.gz", 20_000, "--rate", "0", "--start", str(start), *CHAOS, seed=4)
    run_aggregator_until_idle(topic, group)
    assert_exact(bootstrap, group, [first, read_ledger(tmp_path / "b.gz")])


@pytest.mark.slow
def test_eight_sigkills_during_300k_events(bootstrap, es_url, pipeline, index_prefix, tmp_path: Path) -> None:
    topic, group = pipeline
    generate(topic, tmp_path / "l.gz", 300_000, "--rate", "0", *CHAOS, seed=9)
    rng = random.Random(2026)
    log = tmp_path / "agg.log"
    for _ in range(8):
        proc = start_aggregator(topic, group, log=log)
        time.sleep(rng.uniform(1.5, 6.0))  # from before its restore has finished to mid-way through its backlog
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    run_aggregator_until_idle(topic, group, idle_s=5.0, timeout=600)
    assert_exact(bootstrap, group, [read_ledger(tmp_path / "l.gz")])
    # and through Elasticsearch, with the writer killed mid-way too, proven by `pulse verify`
    writer = subprocess.Popen([sys.executable, "-m", "pulse", "store", "--topic", topic, "--group", group,
                               "--index-prefix", index_prefix], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(5.0, 10.0))
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    run_store(topic, group, index_prefix)
    Elasticsearch(es_url).indices.refresh(index=f"{index_prefix}-*")
    verify = run_pulse("verify", "--topic", topic, "--index-prefix", index_prefix, timeout=600)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]


@pytest.mark.slow
def test_three_instances_joining_and_leaving_equal_one(bootstrap, pipeline, tmp_path: Path) -> None:
    topic, group = pipeline
    producer = subprocess.Popen([sys.executable, "-m", "pulse", "generate", "--topic", topic, "--count", "150000",
                                 "--rate", "8000", "--seed", "21", "--ledger", str(tmp_path / "l.gz"), "--no-progress",
                                 *CHAOS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "agg.log"
    a = start_aggregator(topic, group, log=log)
    time.sleep(4)
    b = start_aggregator(topic, group, log=log)
    time.sleep(4)
    c = start_aggregator(topic, group, log=log)
    time.sleep(4)
    b.send_signal(signal.SIGTERM)  # leaves cleanly mid-run
    assert b.wait(60) == 0
    time.sleep(3)
    d = start_aggregator(topic, group, log=log)  # and another one joins
    assert producer.wait(120) == 0
    time.sleep(3)
    for proc in (a, c, d):
        proc.send_signal(signal.SIGTERM)
    for proc in (a, c, d):
        assert proc.wait(60) == 0
    run_aggregator_until_idle(topic, group)  # finishes whatever was left
    assert_exact(bootstrap, group, [read_ledger(tmp_path / "l.gz")])
    # when b joined, a got back some of the partitions it had handed over, untouched: it used their states as
    # they were instead of restoring them (and the counts above are still exact)
    assert "kept: its changelog is as this instance left it" in log.read_text(), log.read_text()[-3000:]


def test_a_live_stream_flushes_on_the_interval_and_a_backlog_at_its_end(bootstrap, pipeline, tmp_path: Path) -> None:
    """Live traffic (never a full batch) gets one transaction per flush interval, not one per poll; a backlog
    that has just been read to its end is published at once, not at the next interval."""
    topic, group = pipeline
    log = tmp_path / "agg.log"
    agg = start_aggregator(topic, group, "--flush-interval", "2", "--max-seconds", "14", log=log)
    try:
        time.sleep(4)  # joined and idle
        generate(topic, tmp_path / "live.gz", 1_600, "--rate", "200", seed=7)  # 8 s of live traffic
    finally:
        agg.wait(timeout=60)
    flushes = int(log.read_text().strip().splitlines()[-1].split(" flushes")[0].rsplit(" ", 1)[-1])
    assert 3 <= flushes <= 8, log.read_text()  # ~8 s / 2 s (+ the stop flush); per-poll flushing gives ~40
    # a backlog: 60k events already waiting; the first commit covering all of them comes before the interval
    generate(topic, tmp_path / "backlog.gz", 60_000, "--rate", "0", seed=8)
    backlog_group = f"{group}-b"
    agg = start_aggregator(topic, backlog_group, "--flush-interval", "30", log=tmp_path / "b.log")
    try:
        assert _committed_within(25, bootstrap, topic, backlog_group), "the backlog waited for the 30 s interval"
    finally:
        agg.send_signal(signal.SIGINT)
        agg.wait(timeout=60)


def test_a_backlog_is_published_at_its_end_after_flushes_on_the_way(bootstrap, pipeline, tmp_path: Path) -> None:
    """Flushes while a backlog is read (here one per full batch) must not make its end wait for the interval: the
    engine once forgot it was behind at each flush, so a backlog whose last full batch met a flush waited a whole
    interval for its final commit."""
    topic, group = pipeline
    generate(topic, tmp_path / "l.gz", 20_500, "--rate", "0", seed=9)  # 20 full batches of 1,000 and a partial
    _engine, stop, runner = _start_engine(bootstrap, topic, group, batch_size=1_000, flush_records=1_000,
                                          flush_interval_s=60, backlog_flush_interval_s=60)
    try:
        assert _committed_within(30, bootstrap, topic, group), "the end of the backlog waited for the 60 s interval"
    finally:
        stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert_exact(bootstrap, group, [read_ledger(tmp_path / "l.gz")])


def test_a_backlog_is_flushed_on_the_backlog_interval(bootstrap, pipeline, tmp_path: Path) -> None:
    """While reading a backlog (full batches) the engine flushes on the backlog interval, not the live one, and
    still publishes the backlog as soon as it is read to its end."""
    topic, group = pipeline
    generate(topic, tmp_path / "l.gz", 50_500, "--rate", "0", seed=10)
    engine, stop, runner = _start_engine(bootstrap, topic, group, batch_size=250, flush_interval_s=0.05,
                                         backlog_flush_interval_s=60)
    try:
        assert _committed_within(30, bootstrap, topic, group)
        # the caught-up flush (+ one after it) besides each partition's own as it is read to its end; 0.05 s gives ~20
        assert engine.stats.flushes - engine.stats.drained <= 2, engine.stats
    finally:
        stop.set()
        runner.join(timeout=60)
    assert_exact(bootstrap, group, [read_ledger(tmp_path / "l.gz")])


def test_a_backlog_is_published_partition_by_partition(bootstrap, pipeline, tmp_path: Path) -> None:
    """A backlog is read partition after partition: each is published in a transaction of its own once it is read
    to its end and routed, while the next ones are routed, and the results are still exact. (One transaction at a
    time: a partition read to its end while the previous one commits waits for the next batch, so each partition
    holds enough batches to outlast a commit, even the first one on a freshly started broker.)"""
    topic, group = pipeline
    generate(topic, tmp_path / "l.gz", 120_000, "--rate", "0", seed=11)
    engine, stop, runner = _start_engine(bootstrap, topic, group, batch_size=1_000, backlog_flush_interval_s=60)
    try:
        assert _committed_within(30, bootstrap, topic, group)
        assert engine.stats.drained >= 3, engine.stats
    finally:
        stop.set()
        runner.join(timeout=60)
    assert_exact(bootstrap, group, [read_ledger(tmp_path / "l.gz")])


def _start_engine(bootstrap: str, topic: str, group: str, **cfg: Any) -> tuple[Any, Any, Any]:
    """An engine in this process (to set what the command line does not expose), running on a thread."""
    import threading

    from pulse.aggregate.engine import Engine, EngineConfig
    from pulse.topics import aggregator_topics, ensure_topics, input_topics

    ensure_topics(bootstrap, input_topics(topic, 6, 168)[1:] + aggregator_topics(group, 6), compare_config=False)
    engine = Engine(EngineConfig(bootstrap=bootstrap, topic=topic, group=group, instance="t", **cfg))
    stop = threading.Event()
    runner = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    runner.start()
    return engine, stop, runner


def _committed_within(seconds: float, bootstrap: str, topic: str, group: str) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _committed_to_end(bootstrap, topic, group):
            return True
        time.sleep(0.2)
    return _committed_to_end(bootstrap, topic, group)


def _committed_to_end(bootstrap: str, topic: str, group: str) -> bool:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(6)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
        return all(tp.offset >= end for tp, end in zip(consumer.committed(parts, timeout=10), ends, strict=True))
    finally:
        consumer.close()
