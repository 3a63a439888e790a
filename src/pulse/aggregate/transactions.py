"""The aggregator's transactional producer and the calls around it that must survive a broker restart.

librdkafka documents which transactional calls may be repeated after a retriable error (``patiently``); one of
them, ``send_offsets_to_transaction``, can wait past its own timeout for good after a restart (librdkafka issues
5456 and 5511), so it runs under a deadline of ours (``send_offsets``). The engine replaces a producer that
failed either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from pulse.aggregate._core import Counters
from pulse.connect.kafka import client_config
from pulse.kafkaio import QUIET_LOG

_LOG = logging.getLogger("pulse.aggregate")

SEND_OFFSETS_TIMEOUT_S = 30
OUTAGE_PATIENCE_S = 600.0
"""How long a Kafka call is retried while the brokers are away (a restart) before the aggregator gives up."""


PRODUCER_CLIENT = "aggregate.producer"

WRITER_HEADER = "pulse.writer"
"""On the first changelog record of each partition in each transaction: the transactional id that wrote it. A
partition's new owner whose restore waits on a transaction its dead predecessor left open fences that id
(:func:`fence`), so the broker aborts the transaction at once rather than after its timeout."""


def producer_settings(transactional_id: str, transaction_timeout_ms: int) -> dict[str, object]:
    # A transaction begun right after a commit is refused with CONCURRENT_TRANSACTIONS until the broker has
    # written the previous one's markers; librdkafka retries on retry.backoff.ms, doubling up to its max (1 s by
    # default), which would turn a short wait into seconds. Retry as the Java client does for this case (20 ms).
    return {
        "transactional.id": transactional_id,
        "transaction.timeout.ms": transaction_timeout_ms, "linger.ms": 5, "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1024 * 1024,
        "batch.size": 1_000_000, "retry.backoff.ms": 20, "retry.backoff.max.ms": 250, "logger": QUIET_LOG,
    }


def transactional_producer(bootstrap: str, transactional_id: str, transaction_timeout_ms: int) -> Producer:
    return Producer(client_config(bootstrap, producer_settings(transactional_id, transaction_timeout_ms),
                                  client=PRODUCER_CLIENT))


def fence(bootstrap: str, transactional_id: str, timeout_s: float = 30.0) -> None:
    """Take ``transactional_id`` over for a moment: the broker aborts its open transaction (one already asked to
    commit still commits first) and fences the producer that had it. Raises KafkaException if it cannot."""
    producer = transactional_producer(bootstrap, transactional_id, 60_000)
    producer.init_transactions(timeout_s)
    producer.flush(0)


def send_offsets(producer: Producer, positions: list[TopicPartition], metadata: object) -> None:
    """``send_offsets_to_transaction`` under a deadline of ours; a call that has not returned by then raises a
    fatal error, so that the caller replaces the producer."""
    failure: list[KafkaException] = []

    def call() -> None:
        try:
            producer.send_offsets_to_transaction(positions, metadata, SEND_OFFSETS_TIMEOUT_S)
        except KafkaException as exc:
            failure.append(exc)

    worker = threading.Thread(target=call, name="pulse-send-offsets", daemon=True)
    worker.start()
    worker.join(SEND_OFFSETS_TIMEOUT_S + 5)
    if worker.is_alive():
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "sending the input positions to the transaction "
                                         f"did not return within {SEND_OFFSETS_TIMEOUT_S + 5}s", fatal=True))
    if failure:
        raise failure[0]


@dataclass(frozen=True)
class Flushed:
    """What one partition put into a transaction (counted once the transaction commits)."""

    partition: int
    changelog_records: int
    kinds: list[str]  # the kinds of the documents published
    forwarded: int  # records forwarded to the partition that owns their user
    counters: Counters  # the partition's records by outcome so far
    next_offset: int  # its input position in this transaction


class Commit:
    """A transaction whose records are all sent, committing on its own thread (librdkafka releases the GIL)."""

    def __init__(self, producer: Producer, work: list[Flushed]) -> None:
        self.work = work
        self.error: KafkaError | None = None
        self.seconds = 0.0  # how long the broker took to commit
        self._producer = producer
        self.thread = threading.Thread(target=self._run, name="pulse-commit", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            patiently(lambda: self._producer.commit_transaction(60), "commit the transaction")
        except KafkaException as exc:
            self.error = exc.args[0]
        self.seconds = time.monotonic() - t0


def patiently(call: Callable[[], object], what: str) -> None:
    """Run a transactional call, retrying it while its error is retriable (brokers restarting, a coordinator
    moving): librdkafka documents that such calls may be repeated. Logs one line when it starts waiting."""
    deadline = time.monotonic() + OUTAGE_PATIENCE_S
    waiting = False
    while True:
        try:
            call()
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() or err.fatal() or err.txn_requires_abort() or time.monotonic() > deadline:
                raise
            if not waiting:
                _LOG.warning("Kafka did not answer (%s); waiting for it to %s", err.str(), what)
                waiting = True
            time.sleep(0.5)
            continue
        if waiting:
            _LOG.warning("Kafka answered again; resuming")
        return
