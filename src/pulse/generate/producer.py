"""Publish generated records to Kafka: idempotent, acks=all, murmur2-keyed, compressed and batched.

The loop is the hot path of `pulse generate` and `pulse bench produce`: per record it does a cached partition
lookup and one ``produce`` call; delivery reports are counted from a single callback.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaError, Producer

from pulse.connect.kafka import client_config
from pulse.errors import BrokerUnavailable, PulseError
from pulse.generate.chaos import Record, Tag
from pulse.generate.ledger import LedgerWriter
from pulse.generate.outage import AckWatch
from pulse.generate.partitioner import cached_partition, crc32_partition
from pulse.kafkaio import QUIET_LOG
from pulse.topics import require_broker

_LOG = logging.getLogger("pulse.generate")

def producer_config(bootstrap: str, client: str = "generate.producer", **overrides: object) -> dict[str, object]:
    """The producer settings Pulse uses everywhere it writes input events (``client``: the name operators' scoped
    properties use for it)."""
    return client_config(bootstrap, producer_settings(**overrides), client=client)


def producer_settings(**overrides: object) -> dict[str, object]:
    return {
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        # never give up on a record: a broker restart is waited out (the queue fills, then produce waits), and an
        # idempotent producer keeps order and writes each record once however long that takes
        "message.timeout.ms": 0,
        "partitioner": "murmur2_random",  # same as Java's default for keyed records
        "logger": QUIET_LOG,
        **overrides,
    }


@dataclass
class GenerateReport:
    requested: int | None
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    by_tag: Counter[Tag] = field(default_factory=Counter)
    first_error: str | None = None
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RunLimits:
    count: int | None = None
    duration_s: float | None = None
    pace: bool = False  # follow the event clock in wall time (rate > 0) instead of running flat out


class EventProducer:
    """Wraps one confluent-kafka Producer with delivery accounting and an optional ledger."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, ledger: LedgerWriter | None = None,
                 null_keys: float = 0.0, seed: int = 0, crc32_keys: float = 0.0, **overrides: object) -> None:
        """``null_keys``: the share of records sent without a key to a random partition (what REST proxies,
        connectors and plain clients do), as a foreign producer would; ``crc32_keys``: the share keyed by user id
        but partitioned by librdkafka's default (CRC-32); the rest are keyed by user id as Java clients do."""
        require_broker(bootstrap)
        self.null_keys, self.crc32_keys = null_keys, crc32_keys
        self._random = random.Random(seed)
        self.topic = topic
        self.partitions = partitions
        self.ledger = ledger
        self.report = GenerateReport(requested=None)
        self._fatal: str | None = None
        self._acks = AckWatch(bootstrap, started=time.monotonic())
        # Without a ledger only failures need a Python callback: the rest are counted from the queue length.
        self._per_record = ledger is not None
        self._producer = Producer(producer_config(bootstrap, on_delivery=self._on_delivery,
                                                  error_cb=self._on_error,
                                                  **{"delivery.report.only.error": not self._per_record},
                                                  **overrides))

    def _on_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is not None:
            self.report.failed += 1
            self.report.first_error = self.report.first_error or err.str()
            return
        self.report.delivered += 1
        if self.ledger is not None:
            kind, ts = msg.timestamp()  # type: ignore[attr-defined]
            self.ledger.delivered(msg.partition(), msg.offset(),  # type: ignore[attr-defined]
                                  ts if kind == TIMESTAMP_LOG_APPEND_TIME else None)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._acks.all_brokers_down()

    def run(self, records: Iterator[Record], limits: RunLimits, clock_elapsed: Callable[[], float],
            on_progress: Callable[[GenerateReport], None] | None = None) -> GenerateReport:
        """Produce until the count or duration is reached, or Ctrl-C; then flush and return the report."""
        report = self.report
        report.requested = limits.count
        produce, poll = self._producer.produce, self._producer.poll
        topic, parts, ledger = self.topic, self.partitions, self.ledger
        by_tag = report.by_tag
        count = limits.count if limits.count is not None else 1 << 62
        deadline = time.monotonic() + limits.duration_s if limits.duration_s else float("inf")
        t0 = time.monotonic()
        next_report = t0 + 0.25
        pace = limits.pace
        unkeyed, chance, anywhere = self.null_keys, self._random.random, self._random.randrange
        foreign = unkeyed + self.crc32_keys
        n = 0
        try:
            for tag, key, value, send_ms in records:
                if n >= count:
                    break
                draw = chance() if foreign else 1.0
                if draw < unkeyed:
                    key, partition = None, anywhere(parts)
                elif draw < foreign:
                    partition = crc32_partition(key, parts)
                else:
                    partition = cached_partition(key, parts)
                while True:
                    try:
                        produce(topic, value, key, partition=partition, timestamp=send_ms)
                        break
                    except BufferError:  # the queue is full: Kafka is slow or away
                        poll(0.05)
                        self._check_fatal()
                        self._count_delivered(n)
                n += 1
                by_tag[tag] += 1
                report.bytes += len(value)
                if ledger is not None:
                    ledger.produced(tag, partition, key, value, send_ms)
                if pace:
                    ahead = clock_elapsed() - (time.monotonic() - t0)
                    if ahead > 0.002:
                        poll(0)
                        time.sleep(min(ahead, 0.5))
                if n & 1023 == 0 or pace:
                    if n & 1023 == 0:
                        poll(0)
                    now = time.monotonic()
                    if now >= next_report:
                        self._check_fatal()
                        report.produced, report.seconds = n, now - t0
                        self._count_delivered(n)
                        if on_progress:
                            on_progress(report)
                        next_report = now + 0.25
                    if now >= deadline:
                        break
        except KeyboardInterrupt:
            report.interrupted = True
        report.produced = n
        self._flush(report)
        self._count_delivered(n)
        report.seconds = time.monotonic() - t0
        return report

    def _count_delivered(self, produced: int) -> None:
        """Count what was acknowledged; say once when acknowledgements stop and once when they resume."""
        waiting = len(self._producer)
        if not self._per_record:  # else the delivery callback counts them
            self.report.delivered = produced - waiting - self.report.failed
        line = self._acks.observe(self.report.delivered, waiting, time.monotonic())
        if line:
            _LOG.warning(line)

    def _check_fatal(self) -> None:
        if self._fatal:
            raise BrokerUnavailable(f"Kafka producer stopped: {self._fatal}")

    def _flush(self, report: GenerateReport) -> None:
        """Wait for every record to be acknowledged; while Kafka is away, as long as it takes (Ctrl-C gives up
        after another 60 s)."""
        deadline = float("inf")
        while time.monotonic() < deadline:
            try:
                if self._producer.flush(1.0) == 0:
                    return
                self._check_fatal()
                self._count_delivered(report.produced)
            except KeyboardInterrupt:
                report.interrupted = True
                deadline = min(deadline, time.monotonic() + 60)
        raise PulseError(f"{len(self._producer)} records were still undelivered 60s after Ctrl-C")
