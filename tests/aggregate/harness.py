"""Helpers for aggregator tests: read what the engine committed, and compute what it should be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from pulse.aggregate.config import StateConfig
from pulse.generate.ledger import Ledger
from pulse.kafkaio import read_range
from pulse.verify.reference import Expected, recompute


def read_latest_docs(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    """The newest committed document per id in the aggregates topic (later offsets win, within a partition)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    docs: dict[str, dict[str, Any]] = {}
    for p in range(partitions):
        for _, key, value, _ in read_range(bootstrap, topic, p, 0):
            if key is not None and value is not None:
                docs[key.decode()] = orjson.loads(value)
    return docs


def expected_from_ledgers(ledgers: list[Ledger], sizes: tuple[int, ...] = StateConfig.window_sizes,
                         grace_ms: int = StateConfig.grace_ms,
                         horizon_ms: int = StateConfig.correct_within_ms) -> Expected:
    """The reference for an aggregator run with its defaults (``sizes``: its default windows)."""
    rows = [(r.partition, r.offset, r.value, r.record_ts) for ledger in ledgers for r in ledger]
    return recompute(rows, sizes, grace_ms, horizon_ms)


def start_aggregator(topic: str, group: str, *extra: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "pulse", "aggregate", "--topic", topic, "--group", group, *extra],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def run_aggregator_until_idle(topic: str, group: str, *extra: str, idle_s: float = 2.0, timeout: float = 300) -> None:
    proc = subprocess.run([sys.executable, "-m", "pulse", "aggregate", "--topic", topic, "--group", group,
                           "--exit-when-idle", str(idle_s), *extra], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def generate(topic: str, ledger: Path, count: int, *extra: str, seed: int = 1) -> None:
    proc = subprocess.run([sys.executable, "-m", "pulse", "generate", "--topic", topic, "--count", str(count),
                           "--seed", str(seed), "--ledger", str(ledger), "--no-progress", *extra],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr


CHAOS = ("--late-fraction", "0.03", "--duplicate-fraction", "0.03", "--invalid-fraction", "0.03",
         "--disorder-fraction", "0.03", "--too-late-fraction", "0.01")


def run_store(topic: str, group: str, prefix: str, idle: float = 1.5, timeout: float = 600) -> None:
    proc = subprocess.run([sys.executable, "-m", "pulse", "store", "--topic", topic, "--group", group,
                           "--index-prefix", prefix,
                           "--exit-when-idle", str(idle)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

