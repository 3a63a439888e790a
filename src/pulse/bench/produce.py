"""`pulse bench produce`: Pulse's generator+producer against Kafka's own ProducerPerformance, same run.

Both write a fresh topic on the same broker with the same producer settings (acks=all, idempotence, lz4,
linger, batch size) and the same record size (Pulse's measured mean), so the ratio is what matters.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from pulse.config import Settings
from pulse.connect.kafka import client_config
from pulse.errors import PulseError
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.producer import EventProducer, RunLimits
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.stack import artifacts
from pulse.stack.service import java_home
from pulse.topics import TopicSpec, ensure_topics

SHARED_PROPS = {"acks": "all", "enable.idempotence": "true", "compression.type": "lz4", "linger.ms": "20",
                "batch.size": "1000000"}


@dataclass(frozen=True)
class ProduceResult:
    name: str
    records: int
    seconds: float
    record_bytes: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def _fresh_topic(settings: Settings, partitions: int) -> str:
    name = f"pulse.bench.produce-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.bootstrap, [TopicSpec(name, partitions, {})])
    return name


def _drop(settings: Settings, topic: str) -> None:
    admin = AdminClient(client_config(settings.bootstrap))  # keep a reference while the future runs
    admin.delete_topics([topic])[topic].result(timeout=30)


def run_pulse(settings: Settings, count: int, partitions: int) -> ProduceResult:
    topic = _fresh_topic(settings, partitions)
    try:
        traffic = Traffic(TrafficConfig(seed=7, start_ms=int(time.time() * 1000)))
        producer = EventProducer(settings.bootstrap, topic, partitions)
        report = producer.run(Chaos(traffic, ChaosConfig()), RunLimits(count=count), lambda: 0.0)
    finally:
        _drop(settings, topic)
    if report.delivered != count:
        raise PulseError(f"pulse producer delivered {report.delivered} of {count}: {report.first_error}")
    return ProduceResult("pulse generate", report.delivered, report.seconds, report.bytes / report.produced)


def run_kafka_tool(settings: Settings, count: int, partitions: int, record_size: int) -> ProduceResult:
    lib, _ = artifacts.kafka_lib(settings, tools=True)
    topic = _fresh_topic(settings, partitions)
    props = [f"bootstrap.servers={settings.bootstrap}", *(f"{k}={v}" for k, v in SHARED_PROPS.items())]
    argv = [str(java_home() / "bin" / "java"), "-Xmx1g", "-cp", f"{lib}/*",
            "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(count),
            "--record-size", str(record_size), "--throughput", "-1", "--producer-props", *props]
    try:
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        elapsed = time.monotonic() - t0
    finally:
        _drop(settings, topic)
    final = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"{count} records sent")]
    if proc.returncode != 0 or not final:
        raise PulseError(f"ProducerPerformance failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    match = re.search(r"([\d.]+) records/sec", final[0])
    rate = float(match.group(1)) if match else count / elapsed
    return ProduceResult("kafka ProducerPerformance", count, count / rate, float(record_size))
