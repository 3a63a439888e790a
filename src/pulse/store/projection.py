"""The loop shared by Pulse's Kafka → Elasticsearch projections (aggregates writer, event archive).

Consume in batches, let the subclass turn records into bulk operations, write them through :class:`BulkSink`
when a flush is due (time or size), commit offsets only after Elasticsearch accepted everything, refresh the
heartbeat, and (for batch jobs) stop once the group has committed every source topic to its end.

Flushes are written by worker threads, up to `IN_FLIGHT` at once (Elasticsearch's advice for indexing speed:
several bulk workers, so that its write threads run in parallel): while they are written, the loop reads and
coalesces the next one. The loop waits only when the next flush is full and every worker busy (memory stays
bounded by a few flushes); a wait that goes on (Elasticsearch down) keeps the consumer in its group without
fetching (Kafka is the buffer). Offsets are those the consumer had reached when a flush was taken, committed in
order once it and every flush before it are written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from typing import Generic, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pulse.connect.elasticsearch import EsConnection
from pulse.connect.kafka import client_config
from pulse.kafkaio import QUIET_LOG, admin_client, group_caught_up, outage_log
from pulse.store.bulk import BulkOp, BulkSink, ShutdownPatience, SinkStats
from pulse.store.heartbeat import Heartbeat

S = TypeVar("S", bound=SinkStats)
_LOG = logging.getLogger("pulse.store")


_BATCH = 5_000  # records per consume call
IN_FLIGHT = 2  # flushes being written at once
_PATIENT_WAIT_S = 5.0  # waiting longer for a write, the consumer pauses (which drops what it prefetched)


@dataclass(frozen=True)
class _InFlight:
    """A flush being written, and the positions to commit once it is."""

    written: Future[None]
    positions: list[TopicPartition]


def projection_settings(group_id: str) -> dict[str, object]:
    """The writers' consumer (`pulse store`, `pulse archive`)."""
    return {
        "group.id": group_id, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "fetch.max.bytes": 32 * 1024 * 1024, "session.timeout.ms": 6_000, "heartbeat.interval.ms": 1_500,
        # documents arrive in one burst per aggregator flush: do not park fetches for the default 500 ms
        "fetch.wait.max.ms": 50, "logger": QUIET_LOG,
    }


class Projection(Generic[S]):
    """Subclasses implement :meth:`add` (one record), :meth:`take` (the ops to write now) and :meth:`beat`."""

    # write as soon as the topic is drained, not only every ``flush_interval_s``: for input that comes in bursts
    # (an aggregator's transactions), where waiting only adds latency
    flush_when_drained = False

    def __init__(self, bootstrap: str, es: EsConnection, group_id: str, dlq_topic: str, stats: S, component: str,
                 flush_interval_s: float, on_flush: Callable[[S], None] | None = None) -> None:
        self.stats = stats
        self.flush_interval_s = flush_interval_s
        self._on_flush = on_flush
        self.es = es.client(request_timeout=30, retry_on_timeout=False, max_retries=0)
        self._consumer = Consumer(client_config(
            bootstrap, projection_settings(group_id) | {"error_cb": outage_log(component, bootstrap)},
            client=f"{component.split(':')[0]}.consumer"))
        self._admin = admin_client(bootstrap)
        self._sink = BulkSink(self.es, bootstrap, dlq_topic, stats, component)
        self._writer = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix=f"{component}-bulk")
        self._in_flight: deque[_InFlight] = deque()  # oldest first
        self._halt = threading.Event()  # the loop ended without a final flush: the worker gives up in time
        self._commits_failing_since: float | None = None  # monotonic, while commits fail
        self._committed: dict[tuple[str, int], int] = {}  # what this instance last committed
        self.heartbeat = Heartbeat(bootstrap, component)

    # -- what subclasses provide --------------------------------------------------------------------------------
    def sources(self) -> dict[str, bool]:
        """Topics to consume → whether each is written transactionally (for the caught-up check)."""
        raise NotImplementedError

    def add(self, msg: Message) -> None:
        raise NotImplementedError

    def full(self) -> bool:
        return False

    def take(self) -> list[list[BulkOp]]:
        """The pending operations as bulk requests, clearing them."""
        raise NotImplementedError

    def beat(self) -> None:
        """Publish the heartbeat (``self.heartbeat.publish``)."""

    def written(self, requests: list[list[BulkOp]]) -> None:
        """After Elasticsearch accepted ``requests`` (before the offsets are committed)."""

    def finished(self) -> None:
        """After the last flush, before the loop ends."""

    # -- the loop -------------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, exit_when_idle_s: float | None = None) -> S:
        sources = self.sources()
        self._consumer.subscribe(list(sources))
        last_flush = last_input = time.monotonic()
        due = False
        try:
            while not stop.is_set():
                self.on_tick()
                batch = self._consumer.consume(_BATCH, 0.05)
                for msg in batch:
                    if msg.error() is None:
                        self.add(msg)
                if batch:
                    last_input = time.monotonic()
                    self.stats.consumed += len(batch)
                drained = self.flush_when_drained and bool(batch) and len(batch) < _BATCH
                due = due or drained or time.monotonic() - last_flush >= self.flush_interval_s
                self._settle(wait=False)
                # a due flush waits for a free worker (coalescing meanwhile), unless the next one is full
                if self.full() or (due and len(self._in_flight) < IN_FLIGHT):
                    self.flush(stop)
                    last_flush, due = time.monotonic(), False
                if exit_when_idle_s is not None and not batch and time.monotonic() - last_input > exit_when_idle_s:
                    self.flush(stop, settle=True)
                    if all(group_caught_up(self._consumer, self._admin, t, tx) for t, tx in sources.items()):
                        break
                    last_input = time.monotonic()
            self.flush(stop, final=True)
        finally:
            self._halt.set()
            self._writer.shutdown(wait=True, cancel_futures=True)
            self._consumer.close()
            self._sink.close()
            self.heartbeat.close()
        return self.stats

    def _positions(self) -> list[TopicPartition]:
        """Where the consumer has read to: what a flush taken now covers."""
        try:
            return [tp for tp in self._consumer.position(self._consumer.assignment()) if tp.offset >= 0]
        except KafkaException as exc:  # no position while the group rebalances: the next flush commits
            _LOG.debug("positions unknown (%s)", exc.args[0].str())
            return []

    def _commit(self, positions: list[TopicPartition]) -> None:
        """Commit the positions after a successful write. While the brokers restart (or the group rebalances) a
        commit can fail; the next flush commits later positions, and a record written twice meanwhile is
        idempotent (versions, ids), so the failure is logged and the loop goes on."""
        if not positions:
            return
        try:
            self._consumer.commit(offsets=positions, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            if self._commits_failing_since is None:  # one line an outage, not one a flush
                self._commits_failing_since = time.monotonic()
                _LOG.warning("offsets not committed (%s); later flushes commit them", err.str())
            return
        self._committed |= {(tp.topic, tp.partition): tp.offset for tp in positions}
        if self._commits_failing_since is not None:
            _LOG.warning("offsets committed again after %.0fs", time.monotonic() - self._commits_failing_since)
            self._commits_failing_since = None

    def _commit_passed(self) -> None:
        """With every record read so far written, commit positions that moved past records which gave no
        document: above all an aborted transaction, whose records a read_committed consumer skips. Otherwise a
        quiet source whose last transaction was aborted would never be committed to its end (its lag would stay,
        and `--exit-when-idle` would wait for ever)."""
        moved = [tp for tp in self._positions() if self._committed.get((tp.topic, tp.partition)) != tp.offset]
        self._commit(moved)

    def on_tick(self) -> None:
        """Housekeeping before each poll (e.g. retention)."""

    def _write(self, requests: list[list[BulkOp]], stop: threading.Event | None) -> None:
        """On the worker thread: every request, then what the subclass does once they are written."""
        patience = ShutdownPatience()
        for ops in requests:
            self._sink.write(ops, lambda: self._halt.is_set() or (stop is not None and stop.is_set()), patience)
        self.written(requests)

    def _settle(self, wait: bool = True, keep: int = 0) -> None:
        """Commit what the oldest written flushes covered; ``wait``: until at most ``keep`` are in flight."""
        while self._in_flight:
            flight = self._in_flight[0]
            if not flight.written.done():
                if not wait or len(self._in_flight) <= keep:
                    return
                self._wait(flight.written)
            self._in_flight.popleft()
            flight.written.result()  # an error of the write (e.g. Elasticsearch gone at shutdown) ends the loop
            self._commit(flight.positions)
            if self._on_flush:
                self._on_flush(self.stats)

    def _wait(self, written: Future[None]) -> None:
        if wait_for([written], _PATIENT_WAIT_S).done:
            return
        assignment = self._consumer.assignment()
        self._consumer.pause(assignment)
        try:
            while not written.done():
                msg = self._consumer.poll(0.1)  # stays in the group; paused partitions fetch nothing
                if msg is not None and msg.error() is None:  # from a partition assigned meanwhile: not paused
                    self.add(msg)
                    self.stats.consumed += 1
        finally:
            self._consumer.resume(assignment)

    def flush(self, stop: threading.Event | None = None, final: bool = False, settle: bool = False) -> None:
        """Hand what is pending to a worker (waiting for one to be free); ``final`` or ``settle``: and wait until
        every flush is written."""
        consumed = self.stats.consumed  # what the requests taken now cover
        requests = self.take()
        if requests:
            positions = self._positions()
            self._settle(keep=IN_FLIGHT - 1)
            self._in_flight.append(_InFlight(self._writer.submit(self._write, requests, stop), positions))
        if final or settle:
            self._settle()
        if not requests and not self._in_flight and self.stats.consumed == consumed:  # none added while waiting
            self._commit_passed()
        if final:
            self.finished()
        if final or self.heartbeat.due():
            self.beat()
