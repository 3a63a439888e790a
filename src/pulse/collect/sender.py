"""The collector's Kafka side: every answer waits for the broker's acknowledgement (idempotent, ``acks=all``).

Each valid event is produced keyed by user id to the partition Kafka's default partitioner (murmur2) gives it, so
the aggregator owns its user there without forwarding; invalid ones go to the input's dead-letter topic with their
reason. The producer's queue is bounded: when it is full, or the brokers are away, a client is told to come back
later (``retry``) instead of being answered for an event that may be lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from pulse.collect.intake import Invalid, Ready
from pulse.errors import BrokerUnavailable, PulseError
from pulse.events.deadletter import letter_headers
from pulse.generate.partitioner import cached_partition
from pulse.generate.producer import producer_config
from pulse.topics import dead_letter_topic, require_broker

_LOG = logging.getLogger("pulse.collect")

SOURCE = "collector"
"""What a dead letter from the collector names as its source (the aggregator's name the input topic)."""
RECENT_IDS = 200_000
"""Event ids acknowledged lately, answered ``duplicate`` when sent again (a client retrying a batch whose answer
it lost). Beyond them, and after a restart, the aggregator's duplicate detection still counts each event once."""


@dataclass(frozen=True)
class Outcome:
    """One event's answer: ``accepted`` (with where Kafka put it), ``duplicate``, ``rejected`` or ``retry``."""

    result: str
    event_id: str | None = None
    partition: int | None = None
    offset: int | None = None
    reason: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Sender:
    def __init__(self, bootstrap: str, topic: str, queue_kbytes: int = 64 * 1024) -> None:
        require_broker(bootstrap)
        self.topic, self.dlq = topic, dead_letter_topic(topic)
        self._producer = Producer(producer_config(
            bootstrap, error_cb=self._on_error, **{"linger.ms": 5, "queue.buffering.max.kbytes": queue_kbytes}))
        self.partitions = self._partitions(topic)
        self._down_since: float | None = None
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="pulse-collect-deliveries", daemon=True)
        self._poller.start()

    def _partitions(self, topic: str) -> int:
        try:
            found = self._producer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read topic {topic}: {exc.args[0].str()}") from None
        if found is None or found.error is not None or not found.partitions:
            raise PulseError(f"input topic {topic} does not exist: create it with `pulse setup --topic {topic}`")
        return len(found.partitions)

    @property
    def ready(self) -> bool:
        return self._down_since is None

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self._down_since is None:
            self._down_since = time.monotonic()
            _LOG.warning("Kafka is unreachable: answering 503 until it is back (nothing is acknowledged meanwhile)")

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            if self._down_since is not None and time.monotonic() - self._down_since > 2:
                self._probe()

    def _probe(self) -> None:
        try:
            self._producer.list_topics(self.topic, timeout=1)
        except KafkaException:
            self._down_since = time.monotonic()
            return
        _LOG.warning("Kafka is reachable again")
        self._down_since = None

    async def send(self, events: list[Ready | Invalid], wait_s: float) -> list[Outcome]:
        """Produce each valid event (an invalid one as a dead letter), await every acknowledgement for at most
        ``wait_s``; one outcome per event, in order."""
        out: list[Outcome] = []
        acks = _Acks(asyncio.get_running_loop())
        full = not self.ready
        here: set[str] = set()  # a copy sent twice in one request: the second is a duplicate of the first
        for ev in events:
            if isinstance(ev, Invalid):
                out.append(Outcome("rejected", ev.event_id, reason=ev.reason, detail=ev.detail))
                self._produce(self.dlq, ev.raw, None, _dlq_partition(ev, self.partitions),
                              letter_headers(ev.reason, ev.detail, SOURCE), acks, None)
            elif ev.event_id in self._recent or ev.event_id in here:
                out.append(Outcome("duplicate", ev.event_id))
            else:
                here.add(ev.event_id)
                out.append(Outcome("retry", ev.event_id))
                if not full:
                    full = not self._produce(self.topic, ev.value, ev.key,
                                             cached_partition(ev.key, self.partitions), ev.headers, acks, len(out) - 1)
        await acks.wait(wait_s)
        for i, (partition, offset) in acks.delivered.items():
            out[i] = Outcome("accepted", out[i].event_id, partition, offset)
            self._remember(out[i].event_id)
        return out

    def _produce(self, topic: str, value: bytes, key: bytes | None, partition: int,
                 headers: list[tuple[str, bytes]], acks: _Acks, index: int | None) -> bool:
        """False when the producer's queue is full (nothing was produced)."""
        try:
            self._producer.produce(topic, value, key, partition=partition, headers=headers,
                                   on_delivery=acks.expect(index))
        except BufferError:
            acks.expected_none()
            return False
        return True

    def _remember(self, event_id: str | None) -> None:
        if event_id is None:
            return
        self._recent[event_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    def close(self, timeout_s: float = 10.0) -> int:
        """Deliver what is queued, for at most ``timeout_s``; the number of records left undelivered."""
        self._stop.set()
        self._poller.join(2)
        return self._producer.flush(timeout_s)


class _Acks:
    """The delivery reports of one request's records, counted on the producer's thread; the request wakes once,
    when the last one is in (or when its wait is over)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._done = loop, loop.create_future()
        self.delivered: dict[int, tuple[int, int]] = {}  # outcome index -> (partition, offset)
        self._left = 0
        self._sealed = False  # every record is produced: the last report may wake the request
        self._lock = threading.Lock()

    def expect(self, index: int | None) -> Callable[[KafkaError | None, Any], None]:
        """A delivery callback for one record (``index``: its outcome's; None for a dead letter)."""
        with self._lock:
            self._left += 1

        def delivered(err: KafkaError | None, msg: Any) -> None:
            with self._lock:
                if err is None and index is not None:
                    self.delivered[index] = (msg.partition(), msg.offset())
                self._left -= 1
                last = self._sealed and self._left == 0
            if last:
                self._loop.call_soon_threadsafe(_finish, self._done)
        return delivered

    def expected_none(self) -> None:
        """The record of the last :meth:`expect` was not produced after all."""
        with self._lock:
            self._left -= 1

    async def wait(self, timeout_s: float) -> None:
        with self._lock:
            self._sealed = True
            pending = self._left > 0
        if pending:
            await asyncio.wait([self._done], timeout=timeout_s)
        with self._lock:  # reports after the wait are not this answer's: the event is answered retry
            self.delivered = dict(self.delivered)


def _finish(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _dlq_partition(bad: Invalid, partitions: int) -> int:
    """Dead letters spread by event id (they have no user to key by that the contract vouches for)."""
    return cached_partition((bad.event_id or "").encode() or bad.raw[:64], partitions)
