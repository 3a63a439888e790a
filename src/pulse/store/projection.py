"""The loop shared by Pulse's Kafka → Elasticsearch projections (aggregates writer, event archive).

Consume in batches, let the subclass turn records into bulk operations, write them through :class:`BulkSink`
when a flush is due (time or size), commit offsets only after Elasticsearch accepted everything, refresh the
heartbeat, and (for batch jobs) stop once the group has committed every source topic to its end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import Consumer, KafkaException, Message

from pulse.connect.elasticsearch import EsConnection
from pulse.connect.kafka import client_config
from pulse.kafkaio import QUIET_LOG, admin_client, group_caught_up, outage_log
from pulse.store.bulk import BulkOp, BulkSink, SinkStats
from pulse.store.heartbeat import Heartbeat

S = TypeVar("S", bound=SinkStats)
_LOG = logging.getLogger("pulse.store")


_BATCH = 5_000  # records per consume call


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
        self._consumer = Consumer(client_config(bootstrap, {
            "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "fetch.max.bytes": 32 * 1024 * 1024, "session.timeout.ms": 6_000, "heartbeat.interval.ms": 1_500,
            # documents arrive in one burst per aggregator flush: do not park fetches for the default 500 ms
            "fetch.wait.max.ms": 50, "logger": QUIET_LOG, "error_cb": outage_log(component, bootstrap),
        }))
        self._admin = admin_client(bootstrap)
        self._sink = BulkSink(self.es, self._consumer, bootstrap, dlq_topic, stats, component)
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
                if self.full() or drained or time.monotonic() - last_flush >= self.flush_interval_s:
                    self.flush(stop)
                    last_flush = time.monotonic()
                if exit_when_idle_s is not None and not batch and time.monotonic() - last_input > exit_when_idle_s:
                    self.flush(stop)
                    if all(group_caught_up(self._consumer, self._admin, t, tx) for t, tx in sources.items()):
                        break
                    last_input = time.monotonic()
            self.flush(stop, final=True)
        finally:
            self._consumer.close()
            self._sink.close()
            self.heartbeat.close()
        return self.stats

    def _commit(self) -> None:
        """Commit the positions after a successful write. While the brokers restart (or the group rebalances) a
        commit can fail; the next flush commits later positions, and a record written twice meanwhile is
        idempotent (versions, ids), so the failure is logged and the loop goes on."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            _LOG.warning("offsets not committed (%s); the next flush commits them", err.str())

    def on_tick(self) -> None:
        """Housekeeping before each poll (e.g. retention)."""

    def flush(self, stop: threading.Event | None = None, final: bool = False) -> None:
        requests = self.take()
        if requests:
            for ops in requests:
                self._sink.write(ops, stop)
            self.written(requests)
            self._commit()
            if self._on_flush:
                self._on_flush(self.stats)
        if final:
            self.finished()
        if final or self.heartbeat.due():
            self.beat()
