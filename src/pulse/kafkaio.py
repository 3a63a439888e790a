"""Kafka client helpers: exact reads of partition ranges, offsets, whether a group caught up, and quiet clients."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from pulse.connect.kafka import client_config
from pulse.errors import PulseError

T = TypeVar("T")

QUIET_LOG = logging.getLogger("pulse.librdkafka")
"""Give this as a client's ``logger`` where Pulse reports errors itself (no librdkafka chatter on stderr)."""
QUIET_LOG.addHandler(logging.NullHandler())
QUIET_LOG.propagate = False


REFUSALS = {KafkaError._AUTHENTICATION: "refused the credentials", KafkaError._SSL: "failed the TLS handshake",
            KafkaError.SASL_AUTHENTICATION_FAILED: "refused the credentials"}
"""Connection errors that are an operator's mistake, not an outage: said in one line, never waited out."""


def outage_log(client: str, bootstrap: str, every_s: float = 60.0) -> Callable[[KafkaError], None]:
    """An ``error_cb`` for clients that ride out broker restarts (librdkafka reconnects by itself): one log line
    when every broker is unreachable, at most once a minute, instead of librdkafka's line per retry."""
    last = [-every_s]
    log = logging.getLogger(f"pulse.{client}")

    def report(err: KafkaError) -> None:
        if err.fatal():
            log.error("Kafka client failed: %s", err.str())
        elif err.code() in REFUSALS and time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            log.error("Kafka at %s %s: %s; retrying", bootstrap, REFUSALS[err.code()], err.str())
        elif err.code() == KafkaError._ALL_BROKERS_DOWN and time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            log.warning("Kafka at %s is unreachable; waiting for it (nothing is lost meanwhile)", bootstrap)

    return report


BULK_FETCH = {"fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024}
"""Fetch sizes for consumers that read backlogs: librdkafka's 1 MiB per partition caps one consumer at about
140k events/s here; 8 MiB lets it reach about 350k/s. Restore, verify's readers and the benchmarks' raw ceiling
use it."""

INPUT_FETCH = {"fetch.max.bytes": 16 * 1024 * 1024, "max.partition.fetch.bytes": 2 * 1024 * 1024}
"""Fetch sizes for the aggregator's input consumer: it spends far more time per event than a raw reader, so
these keep it as fast as :data:`BULK_FETCH` does, while its prefetched records and fetch buffers hold much less
memory beside its state (see the benchmarks page, `pulse bench memory`)."""


def admin_client(bootstrap: str) -> AdminClient:
    """An admin client whose errors Pulse reports itself (no librdkafka chatter on stderr)."""
    return AdminClient(client_config(bootstrap, {"logger": QUIET_LOG}, client="admin"))


def reader_settings() -> dict[str, object]:
    """A reader of whole partitions (restore, verify, tools): no group of its own to commit to."""
    return {"group.id": f"pulse-restore-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "enable.partition.eof": True, "logger": QUIET_LOG, **BULK_FETCH}


def reader(bootstrap: str) -> Consumer:
    return Consumer(client_config(bootstrap, reader_settings(), client="restore.consumer"))


def watermarks(consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0) -> tuple[int, int]:
    """(low, high) offsets, retrying while a new topic's leader is still being elected."""
    return _retrying(lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10),
                     timeout_s, f"cannot read offsets of {topic}[{partition}]")


def _retrying(lookup: Callable[[], T], timeout_s: float, failure: str) -> T:
    """``lookup()``, retried on a broker's transient errors for up to ``timeout_s``; then ``failure: <error>``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return lookup()
        except KafkaException as exc:
            err = exc.args[0]
            if not transient(err) or time.monotonic() > deadline:
                raise PulseError(f"{failure}: {err.str()}") from None
            time.sleep(0.5)


_TRANSIENT = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._UNKNOWN_PARTITION,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
              KafkaError._TIMED_OUT, KafkaError._DESTROY_BROKER)
"""Errors of a broker restarting or electing leaders: a read retries them (an aggregator restoring while its
broker restarts waits for it, as it waits on everything else). _DESTROY_BROKER: a request in flight to a broker
that left the cluster's metadata while it restarted."""


def transient(err: KafkaError) -> bool:
    """Whether a read or lookup that met ``err`` should wait and try again (see ``_TRANSIENT``)."""
    return not err.fatal() and (err.retriable() or err.code() in _TRANSIENT)


Record = tuple[int, bytes | None, bytes | None, int]
"""(offset, key, value, timestamp) of a consumed record."""


STALLED_AFTER_S = 1.0
"""A read short of its end that gets no record for this long is held (see :func:`read_batches`)."""


def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int | None = None,
               timeout_s: float = 120.0, settled: bool = False) -> Iterator[Record]:
    """Yield (offset, key, value, timestamp) of committed records from ``start`` up to ``end`` (or the end; with
    ``settled``, see :func:`read_messages`)."""
    for msg in read_messages(bootstrap, topic, partition, start, end, timeout_s, settled):
        yield msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]


def record_at(bootstrap: str, topic: str, partition: int, offset: int, timeout_s: float = 5.0) -> Message | None:
    """The record at ``offset`` as written, committed or not (None if none comes within ``timeout_s``): what an
    open transaction wrote first, say."""
    consumer = Consumer(client_config(bootstrap, reader_settings() | {"isolation.level": "read_uncommitted"},
                                      client="restore.consumer"))
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(1, 0.2):
                if msg.error() is None:
                    return msg if msg.offset() == offset else None
        return None
    finally:
        consumer.close()


def read_messages(bootstrap: str, topic: str, partition: int, start: int, end: int | None = None,
                  timeout_s: float = 120.0, settled: bool = False) -> Iterator[Message]:
    """Yield the committed records from ``start`` up to ``end`` (or the end), as consumed messages; fails once
    ``timeout_s`` pass without a record (see :func:`read_batches`)."""
    for batch in read_batches(bootstrap, topic, partition, start, end, timeout_s, settled):
        yield from batch


def read_batches(bootstrap: str, topic: str, partition: int, start: int, end: int | None = None,
                 timeout_s: float = 120.0, settled: bool = False,
                 stalled: Callable[[], None] | None = None) -> Iterator[list[Message]]:
    """:func:`read_messages` a fetched batch at a time (for readers that hand whole batches to native code).

    The end of a read_committed reader is the last stable offset: the first record of a transaction still open.
    ``settled``: read past it, once that transaction has ended (its records come if it commits), to the end of
    everything written. A partition's new owner must restore that way: a transaction its crashed predecessor
    had already asked to commit still commits after the predecessor is gone, and state restored without it
    would disagree with the changelog it is about to extend. ``stalled`` is called whenever no record has come for
    :data:`STALLED_AFTER_S` short of the end (an open transaction may hold the reader)."""
    # the ends wait out a broker as long as the read would (a restore during a broker restart); the reader is made
    # once they are known: one made while the broker was away kept the partition unknown after it came back
    low, high = _bounds(bootstrap, topic, partition, timeout_s)
    if settled:
        high = max(high, _settled_end(bootstrap, topic, partition, timeout_s))
    stop = high if end is None else min(end, high)
    if stop <= max(start, low):
        return
    consumer = reader(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, start if start >= 0 else OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s  # moved on by every record: a long read is not a stuck one
        moved = time.monotonic()
        while time.monotonic() < deadline:
            batch: list[Message] = []
            done = False
            # a short wait: the end of the partition comes as an EOF event, which does not end a longer one early
            for msg in consumer.consume(10_000, 0.05):
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    if not transient(err):
                        raise PulseError(f"reading {topic}[{partition}] failed: {err.str()}")
                    continue  # the broker is away: the read waits (up to ``timeout_s`` without a record)
                if msg.offset() >= stop:
                    done = True
                    break
                if err is None:
                    batch.append(msg)
            if batch:
                yield batch
                moved = time.monotonic()
                deadline = moved + timeout_s
            if done or consumer.position([TopicPartition(topic, partition)])[0].offset >= stop:
                return
            if stalled is not None and time.monotonic() - moved > STALLED_AFTER_S:
                stalled()
                moved = time.monotonic()
        raise PulseError(f"reading {topic}[{partition}] to offset {stop} made no progress for {timeout_s:.0f}s "
                         "(an open transaction from a crashed instance? it aborts within transaction.timeout.ms)")
    finally:
        consumer.close()


def _bounds(bootstrap: str, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    """(low, high) offsets of a partition, each attempt with a new reader (see :func:`read_batches`)."""
    def lookup() -> tuple[int, int]:
        consumer = reader(bootstrap)
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return int(low), int(high)
        finally:
            consumer.close()
    return _retrying(lookup, timeout_s, f"cannot read offsets of {topic}[{partition}]")


def _settled_end(bootstrap: str, topic: str, partition: int, timeout_s: float = 30.0) -> int:
    """The end of everything written to a partition, waiting out a broker that restarts (no leader yet)."""
    admin = admin_client(bootstrap)
    return _retrying(lambda: end_offsets(admin, topic, [partition])[partition], timeout_s,
                     f"cannot read the end of {topic}[{partition}]")


def end_offsets(admin: AdminClient, topic: str, partitions: list[int], timeout_s: float = 10.0,
                committed: bool = False) -> dict[int, int]:
    """High watermarks in one batched admin request (a busy consumer's own lookups wait behind its fetches);
    ``committed``: last stable offsets instead, where a ``read_committed`` reader's view ends now."""
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    ends = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                              isolation_level=level, request_timeout=timeout_s)
    try:
        return {tp.partition: fut.result(timeout=timeout_s).offset for tp, fut in ends.items()}
    except TimeoutError:  # a broker that is away or moving leaders: the callers' KafkaException, as librdkafka's own
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"listing the end offsets of {topic} took over "
                                        f"{timeout_s:g}s")) from None


def group_caught_up(consumer: Consumer, admin: AdminClient, topic: str, transactional: bool) -> bool:
    """True when the consumer's group has committed every partition of ``topic`` to its end. On a
    transactional topic the last record is a commit marker, which no consumer ever sees."""
    partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    high = end_offsets(admin, topic, partitions)
    slack = 1 if transactional else 0
    return all(high[tp.partition] <= 0 or tp.offset >= high[tp.partition] - slack for tp in committed)


def group_assignment(admin: AdminClient, group: str, topic: str, timeout_s: float = 10.0) -> dict[str, set[int]] | None:
    """The partitions of ``topic`` each member of ``group`` owns, by member id; None unless the group is stable
    and every partition is owned (a rebalance is under way, or cannot be told now)."""
    try:
        partitions = set(admin.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        found = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result()
    except (KafkaException, KeyError):
        return None
    if found.state != ConsumerGroupState.STABLE:
        return None
    owners = {member.member_id: {tp.partition for tp in member.assignment.topic_partitions if tp.topic == topic}
              for member in found.members if member.assignment is not None}
    return owners if set().union(*owners.values()) >= partitions else None


def group_lag(lookup: Consumer, topic: str, timeout_s: float = 2.0) -> int | None:
    """Records of ``topic`` not yet committed by ``lookup``'s group (None if that cannot be told now).

    ``lookup`` is a consumer configured with the group's id that never subscribes (so it never joins the
    group): consumer-side lookups ride out broker restarts, where admin-client ones crashed the process."""
    try:
        partitions = lookup.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        committed = lookup.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
        lag = 0
        for tp in committed:
            high = lookup.get_watermark_offsets(tp, timeout=timeout_s)[1]
            lag += max(0, high - max(tp.offset, 0))
        return lag
    except (KafkaException, KeyError, TypeError):  # unknown yet, or the brokers are away
        return None


def waiting_seconds(lookup: Consumer, topic: str, timeout_s: float = 0.5) -> float | None:
    """How long the oldest record of ``topic`` that ``lookup``'s group has not committed has waited: lag in
    seconds (0: none waits; None: it cannot be told now). With the topic's ``LogAppendTime`` the record's
    timestamp is when the broker took it."""
    try:
        partitions = lookup.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        committed = lookup.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
        waiting = [TopicPartition(topic, tp.partition, max(tp.offset, 0)) for tp in committed
                   if lookup.get_watermark_offsets(tp, timeout=timeout_s)[1] > max(tp.offset, 0)]
        if not waiting:
            return 0.0
        lookup.assign(waiting)
        oldest: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(oldest) < len(waiting) and time.monotonic() < deadline:
            for msg in lookup.consume(64, timeout=0.1):
                if msg.error() is None and msg.partition() not in oldest:
                    oldest[msg.partition()] = msg.timestamp()[1]
        return max(0.0, time.time() - min(oldest.values()) / 1000) if oldest else None
    except (KafkaException, KeyError, TypeError):
        return None
    finally:
        with contextlib.suppress(KafkaException):
            lookup.unassign()


def lag_reader(bootstrap: str, group: str) -> Consumer:
    """A consumer for :func:`group_lag` and :func:`waiting_seconds` of ``group`` (small fetches: it reads one
    record per partition)."""
    return Consumer(client_config(bootstrap, lag_settings(group), client="lag.consumer"))


def lag_settings(group: str) -> dict[str, object]:
    return {"group.id": group, "enable.auto.commit": False, "logger": QUIET_LOG,
            "max.partition.fetch.bytes": 16_384, "queued.max.messages.kbytes": 1024}


def offsets_at(consumer: Consumer, topic: str, partitions: list[int], ts_ms: int) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is ≥ ``ts_ms`` (the end if there is none).

    The one rule for "from TIMESTAMP" shared by `pulse replay` and `pulse verify --from`."""
    found = consumer.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in partitions], timeout=30)
    out = {}
    for tp in found:
        out[tp.partition] = tp.offset if tp.offset >= 0 else watermarks(consumer, topic, tp.partition)[1]
    return out


def broker_problem(bootstrap: str, timeout: float = 5.0, connection: Mapping[str, str] | None = None) -> str | None:
    """None if a Kafka broker answers a metadata request at ``bootstrap`` within ``timeout`` seconds, else why
    not, in one line; ``connection``: these connection properties instead of the process's (the local stack's
    own probe)."""
    refused: list[KafkaError] = []
    own = {"logger": QUIET_LOG, "socket.connection.setup.timeout.ms": int(timeout * 1000),
           "error_cb": lambda err: refused.append(err) if err.code() in REFUSALS else None}
    config = (client_config(bootstrap, own, client="admin") if connection is None
              else {**connection, "bootstrap.servers": bootstrap, **own})
    admin = AdminClient(config)
    try:
        if admin.list_topics(timeout=timeout).brokers:
            return None
    except Exception:  # any failure to answer is said below
        pass
    admin.poll(0)  # serves the error callbacks
    if refused:
        err = refused[0]
        return f"Kafka at {bootstrap} {REFUSALS[err.code()]}: {err.str()}"
    return f"Kafka is not reachable at {bootstrap} (is the stack up? `pulse stack up`)"


def broker_reachable(bootstrap: str, timeout: float = 5.0, connection: Mapping[str, str] | None = None) -> bool:
    """True if a Kafka broker answers at ``bootstrap`` within ``timeout`` seconds (see :func:`broker_problem`)."""
    return broker_problem(bootstrap, timeout, connection) is None
