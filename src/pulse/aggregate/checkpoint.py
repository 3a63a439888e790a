"""The checkpoint: one flush's outputs and the input positions in one Kafka transaction.

A flush writes, atomically: dead letters and late events, records forwarded to the partition that owns their user,
changed state to the compacted changelog, changed documents to the aggregates topic, decisions, and the consumer
positions (``send_offsets_to_transaction``). The commit runs on its own thread while the engine goes on
consuming. A transaction that cannot commit is ended here (aborted, or its producer replaced); the engine then
reloads its partitions from the changelog.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pulse.aggregate._core import SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, FlushOutput
from pulse.aggregate.repartition import batch_headers
from pulse.aggregate.transactions import (
    WRITER_HEADER,
    Commit,
    Flushed,
    patiently,
    send_offsets,
    transactional_producer,
)
from pulse.errors import PulseError
from pulse.events.deadletter import letter_headers

_LOG = logging.getLogger("pulse.aggregate")

DEAD_LETTER_BYTES = 64 * 1024
"""A dead letter keeps at most this much of its record (an input record can be up to the topic's limit, and the
dead letter's headers and batch must fit under the same limit); the rest is described by headers."""

RENEWALS_PER_10_MIN = 10
"""Producers replaced before the aggregator ends as fenced by a twin: two instances with one transactional id fence
each other at every flush, so they pass this within a minute or two, while a rolling restart of a cluster costs a
few (each broker that holds a transaction past its timeout fences it)."""

DELIVERY_POLL_EVERY = 10_000
"""A flush serves its delivery reports every this many records it writes, so that the producer lets go of the ones
delivered meanwhile rather than holding the whole transaction until its commit."""


@dataclass(frozen=True)
class Topics:
    """Where a flush writes."""

    input: str
    changelog: str
    aggregates: str
    decisions: str
    repartition: str
    dlq: str
    late: str


@dataclass(frozen=True)
class PartitionOutput:
    """What one partition's flush hands over: the native core's output, plus the decisions recorded with it."""

    flushed: Flushed  # what it is counted as once committed
    output: FlushOutput
    decisions: list[bytes]


class Checkpoint:
    """The aggregator instance's transactional producer and the transaction in flight."""

    def __init__(self, bootstrap: str, transactional_id: str, transaction_timeout_ms: int, topics: Topics) -> None:
        self.topics = topics
        self._new = lambda: transactional_producer(bootstrap, transactional_id, transaction_timeout_ms)
        self._bootstrap, self._transactional_id = bootstrap, transactional_id
        self._writer = [(WRITER_HEADER, transactional_id.encode())]
        self._producer = self._new()
        self._init: threading.Thread | None = None
        self._init_error: KafkaError | None = None
        self._renewals: list[float] = []  # when the producer was last replaced after a fatal error
        self._forwarding: set[int] = set()  # partitions that said they forward records
        self.commit: Commit | None = None  # the transaction committing in the background

    def start(self) -> None:
        """Fence the predecessor's transactions (librdkafka often takes 0.5 s) while the group joins and restores."""
        self._init = threading.Thread(target=self._init_transactions, name="pulse-txn-init", daemon=True)
        self._init.start()

    def _init_transactions(self) -> None:
        try:
            patiently(lambda: self._producer.init_transactions(60), "start transactions")
        except KafkaException as exc:
            self._init_error = exc.args[0]

    def ready(self) -> None:
        """Wait for the start before the first flush. Restoring need not wait: a crashed predecessor's open
        transaction holds read_committed reads of the changelog until init_transactions aborts it."""
        if self._init is not None:
            self._init.join()
            self._init = None
            if self._init_error is not None:
                raise PulseError(f"cannot start Kafka transactions at {self._bootstrap}: {self._init_error.str()}")

    def write(self, positions: list[TopicPartition], group_metadata: object,
              outputs: Iterable[PartitionOutput]) -> None:
        """Send one transaction and start its commit; raises KafkaException if it cannot be sent (then call
        :meth:`failed`). Each output is written, and let go, before the next one is taken."""
        self._producer.begin_transaction()
        # positions first, while the broker is idle: behind this flush's records they wait ~0.1-0.7 s
        if positions:
            send_offsets(self._producer, positions, group_metadata)
        work = []
        for out in outputs:
            self._write_partition(out)
            work.append(out.flushed)
        self.commit = Commit(self._producer, work)

    def settle(self) -> Commit | None:
        """Wait for the commit in flight, if any, and return it (its ``error`` says whether it failed)."""
        commit, self.commit = self.commit, None
        if commit is not None:
            commit.thread.join()
        return commit

    @property
    def committing(self) -> bool:
        return self.commit is not None and self.commit.thread.is_alive()

    def failed(self, err: KafkaError) -> None:
        """End a transaction that cannot commit, leaving no trace (read_committed readers never see it).

        An abortable error (a rebalance, say) is aborted. A producer whose call timed out or failed for good (a
        broker restart: librdkafka can keep asking a coordinator that is gone, and the broker fences a transaction
        that outlived its timeout) is replaced: the new one's ``init_transactions`` ends whatever the old one left
        open. An abort that fails that way too is handled the same. `RENEWALS_PER_10_MIN` at most, since an instance
        fenced by another one with the same transactional id would only fence it back."""
        if err.txn_requires_abort() and not err.fatal():
            _LOG.warning("transaction failed (%s); aborting it and reloading state from the changelog", err.str())
            try:
                patiently(lambda: self._producer.abort_transaction(60), "abort the transaction")
                return
            except KafkaException as exc:  # the abort failed too: the broker fenced the transaction meanwhile
                err = exc.args[0]
        if err.fatal() or err.retriable() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            now = time.monotonic()
            self._renewals = [t for t in self._renewals if now - t < 600] + [now]
            if len(self._renewals) > RENEWALS_PER_10_MIN:
                raise PulseError(f"this aggregator was fenced ({err.str()}): another instance uses transactional "
                                 f"id {self._transactional_id}; give each instance its own --instance")
            _LOG.warning("transaction failed (%s); starting a new producer and reloading state from the changelog",
                         err.str())
            self._producer = self._new()
            patiently(lambda: self._producer.init_transactions(60), "start transactions")
        else:
            raise PulseError(f"Kafka transaction failed: {err.str()}")

    def _write_partition(self, out: PartitionOutput) -> None:
        send, topics, p, flushed = self._send, self.topics, out.flushed.partition, out.output
        for topic, sides in ((topics.dlq, flushed.dead), (topics.late, flushed.late)):
            for side in sides:
                side_headers = _headers(side.source_offset, side.reason, side.detail, topics.input,
                                        side.source_partition)
                value = side.value
                if value is not None and len(value) > DEAD_LETTER_BYTES:
                    value, side_headers = _truncated(value, side_headers)
                send(topic, value, side.key, p, side_headers)
        if p not in self._forwarding and any(batch.records for batch in flushed.forward):
            self._forwarding.add(p)
            _LOG.info("partition %d: forwarding records not keyed by user id to the partitions that own their users, "
                      "through %s (see the README, \"Input from your own producers\")", p, topics.repartition)
        for batch in flushed.forward:  # one per owner: its records, then this partition's watermark
            send(topics.repartition, batch.value, None, batch.owner,
                 batch_headers(p, batch.offset, batch.watermark, batch.idle))
        self._produce_all(topics.changelog, p, ((r.key, r.value) for r in flushed.records), self._writer)
        self._produce_all(topics.aggregates, p, ((d.id.encode(), d.value) for d in flushed.documents))
        for decision in out.decisions:
            send(topics.decisions, decision, None, p)

    def _produce_all(self, topic: str, p: int, records: Iterable[tuple[bytes, bytes | None]],
                     first_headers: list[tuple[str, bytes]] | None = None) -> None:
        """A flush writes tens of thousands of these: produce directly (a wrapper call per record costs ~0.5 us
        of ~2.5), and wait for room only when the producer's queue is full. ``first_headers`` go on the first
        record only: a transaction's first record on a partition is all a new owner reads of it."""
        produce, poll = self._producer.produce, self._producer.poll
        headers = first_headers
        for n, (key, value) in enumerate(records, 1):
            try:
                produce(topic, value, key, p, headers=headers)
            except BufferError:
                self._send(topic, value, key, p, headers)
            headers = None
            if n % DELIVERY_POLL_EVERY == 0:
                poll(0)  # frees the records delivered so far: the producer holds each one until its report is served

    def _send(self, topic: str, value: bytes | None, key: bytes | None, partition: int,
              headers: list[tuple[str, bytes]] | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition=partition, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)


def _truncated(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The first DEAD_LETTER_BYTES of ``value``, with headers giving its original size and SHA-256 digest."""
    return value[:DEAD_LETTER_BYTES], [*headers, ("pulse.original.size", str(len(value)).encode()),
                                       ("pulse.original.sha256", hashlib.sha256(value).hexdigest().encode()),
                                       ("pulse.truncated", b"true")]


def _headers(offset: int, reason: str, detail: str, topic: str, partition: int) -> list[tuple[str, bytes]]:
    """A dead letter's or late event's: why, and where it was read (a forwarded record: where first read)."""
    return [*letter_headers(reason, detail, topic), (SOURCE_PARTITION_HEADER, str(partition).encode()),
            (SOURCE_OFFSET_HEADER, str(offset).encode())]
