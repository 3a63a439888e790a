"""The collector's Kafka side: every answer waits for the broker's acknowledgement (idempotent, ``acks=all``).

Each valid event is produced keyed by user id to the partition Kafka's default partitioner (murmur2) gives it, so
the aggregator owns its user there without forwarding; invalid ones go to the input's dead-letter topic with their
reason. The producer's queue is bounded: when it is full, or the brokers are away, a client is told to come back
later (``retry``) instead of being answered for an event that may be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from pulse.collect.intake import Invalid, Prepared, headers
from pulse.errors import BrokerUnavailable, PulseError
from pulse.events.deadletter import letter_headers
from pulse.generate.partitioner import cached_partition
from pulse.generate.producer import producer_config
from pulse.topics import dead_letter_topic, require_broker

_LOG = logging.getLogger("pulse.collect")

QUEUE_KBYTES = 64 * 1024
CLIENT = "collect.producer"
"""The collector's producer, as operators' scoped properties name it (``collect.producer.*``)."""
SOURCE = "collector"
"""What a dead letter from the collector names as its source (the aggregator's name the input topic)."""
PUMP_S = 0.0005
"""How long the event loop waits between polls for delivery reports while records are in flight."""
RECENT_IDS = 200_000
"""Event ids acknowledged lately, answered ``duplicate`` when sent again (a client retrying a batch whose answer
it lost). Beyond them, and after a restart, the aggregator's duplicate detection still counts each event once."""


Outcome = dict[str, Any]
"""One event's answer: ``result`` (``accepted``, ``duplicate``, ``rejected`` or ``retry``), its ``event_id``, and
``partition`` and ``offset`` when accepted, ``reason`` and ``detail`` when rejected."""


def tuning(queue_kbytes: int = QUEUE_KBYTES) -> dict[str, object]:
    """The collector's producer beside the generator's: a short linger (a request waits for its acknowledgements)
    and a bounded queue (when it is full, clients are told to retry)."""
    # every request waits for its records' reports: a producer reporting only errors would answer nothing
    return {"linger.ms": 5, "queue.buffering.max.kbytes": queue_kbytes, "delivery.report.only.error": False}


class Sender:
    """Delivery reports are served on the event loop (:meth:`pump`), so a request's acknowledgements wake it
    without a thread hand-off."""

    def __init__(self, bootstrap: str, topic: str, queue_kbytes: int = QUEUE_KBYTES) -> None:
        require_broker(bootstrap)
        self.topic, self.dlq = topic, dead_letter_topic(topic)
        self._producer = Producer(producer_config(bootstrap, client=CLIENT, error_cb=self._on_error,
                                                  **tuning(queue_kbytes)))
        self.partitions = self._partitions(topic)
        self._down_since: float | None = None
        self._recent = RecentIds(RECENT_IDS)
        self._waiting = 0  # records produced whose delivery report has not come back
        self._wake = asyncio.Event()
        self._stopped = False

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

    async def pump(self) -> None:
        """Serve delivery reports and errors until :meth:`stop`: often while records are in flight, every tenth
        of a second otherwise."""
        while not self._stopped:
            try:
                served = self._producer.poll(0)
            except Exception:  # a report's callback failed: log it, keep serving the others
                _LOG.exception("serving Kafka's delivery reports")
                served = 0
            if self._down_since is not None and time.monotonic() - self._down_since > 2:
                await asyncio.to_thread(self._probe)
            if self._waiting:  # while Kafka is away, reports come only when it is back (or never): poll slowly
                await asyncio.sleep(0 if served else PUMP_S if self.ready else 0.1)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def _probe(self) -> None:
        try:
            self._producer.list_topics(self.topic, timeout=1)
        except KafkaException:
            self._down_since = time.monotonic()
            return
        _LOG.warning("Kafka is reachable again")
        self._down_since = None

    async def send(self, events: list[Prepared | Invalid], received_ms: int, wait_s: float) -> list[Outcome]:
        """Produce each valid event (an invalid one as a dead letter), await every acknowledgement for at most
        ``wait_s``; one outcome per event, in order."""
        received = b"%d" % received_ms
        out: list[Outcome] = []
        acks = _Acks(self)
        full = not self.ready
        here: dict[str, Outcome] = {}  # a copy sent twice in one request: the second follows the first's outcome
        copies: list[tuple[Outcome, Outcome]] = []
        recent, topic, partitions = self._recent, self.topic, self.partitions
        for ev in events:
            if isinstance(ev, Invalid):
                out.append({"result": "rejected", "reason": ev.reason, "detail": ev.detail}
                           | ({"event_id": ev.event_id} if ev.event_id is not None else {}))
                self._produce(self.dlq, ev.raw, None, _dlq_partition(ev, partitions),
                              letter_headers(ev.reason, ev.detail, SOURCE), acks, acks.dead_letter)
            elif ev.event_id in recent:
                out.append({"result": "duplicate", "event_id": ev.event_id})
            elif ev.event_id in here:
                out.append({"result": "retry", "event_id": ev.event_id})
                copies.append((here[ev.event_id], out[-1]))
            else:
                out.append({"result": "retry", "event_id": ev.event_id})
                here[ev.event_id] = out[-1]
                if not full:
                    full = not self._produce(topic, ev.value, ev.key, cached_partition(ev.key, partitions),
                                             headers(ev, received), acks, partial(acks.delivered, out[-1]))
        self._wake.set()
        await acks.wait(wait_s)
        for outcome in acks.accepted:
            self._recent.add(outcome["event_id"])
        for first, copy in copies:  # a duplicate once its first copy is in; else both are retried
            if first["result"] == "accepted":
                copy["result"] = "duplicate"
        return out

    def _produce(self, topic: str, value: bytes, key: bytes | None, partition: int,
                 headers: dict[str, bytes] | list[tuple[str, bytes]], acks: _Acks,
                 report: Callable[[KafkaError | None, Any], None]) -> bool:
        """False when the producer's queue is full (nothing was produced)."""
        try:
            self._producer.produce(topic, value, key, partition=partition, headers=headers, on_delivery=report)
        except BufferError:
            return False
        self._waiting += 1
        acks.left += 1
        return True

    def stop(self) -> None:
        """End :meth:`pump` (the server is done)."""
        self._stopped = True
        self._wake.set()

    def close(self, timeout_s: float = 10.0) -> int:
        """Deliver what is queued, for at most ``timeout_s``; the number of records left undelivered."""
        self._stopped = True
        return self._producer.flush(timeout_s)


class RecentIds:
    """The last ``size`` to ``2 * size`` ids added, in two generations: the older is dropped whole when the newer
    fills up."""

    def __init__(self, size: int) -> None:
        self._size, self._new, self._old = size, set[str](), set[str]()

    def add(self, event_id: str) -> None:
        if len(self._new) >= self._size:
            self._old, self._new = self._new, set()
        self._new.add(event_id)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._new or event_id in self._old


class _Acks:
    """The delivery reports of one request's records; the request wakes once, when the last one is in (or when
    its wait is over). Reports come on the event loop's thread (see :meth:`Sender.pump`)."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._done = asyncio.get_running_loop().create_future()
        self.accepted: list[Outcome] = []
        self.left = 0  # records produced whose report is still to come
        self._sealed = False  # every record is produced: the last report may wake the request
        self._answered = False  # reports after the answer went out are not this answer's: its event stays retry

    def delivered(self, outcome: Outcome, err: KafkaError | None, msg: Any) -> None:
        if err is None and not self._answered:
            outcome.update(result="accepted", partition=msg.partition(), offset=msg.offset())
            self.accepted.append(outcome)
        self._report()

    def dead_letter(self, err: KafkaError | None, msg: Any) -> None:
        self._report()

    def _report(self) -> None:
        self._sender._waiting -= 1
        self.left -= 1
        if self._sealed and self.left == 0 and not self._done.done():
            self._done.set_result(None)

    async def wait(self, timeout_s: float) -> None:
        self._sealed = True
        if self.left > 0:
            await asyncio.wait([self._done], timeout=timeout_s)
        self._answered = True


def _dlq_partition(bad: Invalid, partitions: int) -> int:
    """Dead letters spread by event id (they have no user to key by that the contract vouches for)."""
    return cached_partition((bad.event_id or "").encode() or bad.raw[:64], partitions)
