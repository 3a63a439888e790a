"""One input partition's aggregation state: validate → late check → de-duplicate → window → entity state.

The state itself lives in native code (``pulse.aggregate._core``, Rust, built from ``native/``): per record it is
a JSON decode and a few integer updates, which Python cannot do at the rate one core receives records. What
stays here is the protocol around it. The native fast path accepts only records that are certainly valid;
every other record comes back to :func:`decide`, where the contract's own validator (``pulse.events.validate``)
either rejects it with a typed reason (dead letter) or accepts it, in offset order. So the contract has one
implementation and the fast path can only ever be stricter than it.

Everything is deterministic in the partition's offset order, so a replay after a crash makes the same decisions.
A flush (:meth:`Partition.flush`) returns changelog records, documents and side outputs; the caller hands them to
one transaction and calls :meth:`Partition.handed_over` (a transaction that fails reloads the partition from its
changelog).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pulse.aggregate._core import PARALLELISM, Details, FlushOutput, Partition, flush_all, process_batch, settle
from pulse.aggregate.config import StateConfig
from pulse.errors import PulseError
from pulse.events.schema import Event
from pulse.events.validate import Rejection, validate

__all__ = ["EVERY_USER", "Details", "Partition", "StateConfig", "decide", "flush_all", "flush_each", "new_partition",
           "remember_recent", "route", "route_batch", "settle", "verdict"]

EVERY_USER = 2**63 - 1
"""A flush's ``users`` that publishes every pending user document (in chunks the core bounds)."""


def flush_each(parts: list[Partition], details: Details, users: list[int],
               flushed_at: int) -> Iterator[tuple[Partition, FlushOutput | None]]:
    """Flush ``parts`` as many at a time as the core renders in parallel, each with its ``users`` count, and hand
    each one's output over as it comes: a caller that writes one before taking the next holds a few partitions'
    documents at once, not every partition's (a flush after a backlog renders hundreds of megabytes)."""
    for i in range(0, len(parts), PARALLELISM):
        group = parts[i:i + PARALLELISM]
        yield from zip(group, flush_all(group, details, users[i:i + PARALLELISM], flushed_at), strict=True)


def new_partition(partition: int, cfg: StateConfig, partitions: int = 0) -> Partition:
    """``partitions``: the input topic's partition count, so that the state forwards events whose user another
    partition owns (``Partition.forwarded``); 0 takes every event here."""
    return Partition(partition, list(cfg.window_sizes), cfg.grace_ms, cfg.correct_within_ms, cfg.session_timeout_ms,
                     cfg.compact_after, partitions, cfg.forward_wait_ms, cfg.user_max_delay_ms)


def verdict(value: bytes | None, record_ts: int) -> Event | Rejection:
    """The contract's validator on a record the fast path left open (the native router reads the result by
    field name)."""
    return validate(value or b"", record_ts)


def decide(st: Partition, offset: int, key: bytes | None, value: bytes | None, record_ts: int) -> None:
    """A record the fast path left to the contract's validator: dead-letter it or route it as valid."""
    result = verdict(value, record_ts)
    if isinstance(result, Rejection):
        st.reject(offset, key, value or b"", result.reason.value, result.detail)
    else:
        st.accept(offset, key, value or b"", record_ts, result)


def route(st: Partition, offset: int, key: bytes | None, value: bytes | None, record_ts: int) -> None:
    """Route one record (``record_ts``, the Kafka timestamp, anchors the future-time check)."""
    if not st.process(offset, key, value, record_ts):
        decide(st, offset, key, value, record_ts)


def route_batch(states: dict[int, Partition], batch: list[Any], wait: bool = True, forwarded: bool = False) -> None:
    """Route a consumed batch of confluent-kafka messages; records of unowned partitions or already inside the
    restored state are skipped. The routing runs on a native thread without the GIL (``native/src/batch.rs``):
    with ``wait=False`` it goes on while the caller consumes the next batch, and the caller must call
    :func:`settle` before it touches any partition (their methods raise until then). ``forwarded``: the batch
    comes from the repartition topic (see ``pulse.aggregate.repartition``)."""
    i = process_batch(states, batch, 0, verdict, forwarded)
    while i >= 0:
        err = batch[i].error()
        if err.fatal():
            settle()
            raise PulseError(f"Kafka consumer error: {err.str()}")
        i = process_batch(states, batch, i + 1, verdict, forwarded)
    if wait:
        settle()


def remember_recent(st: Partition, records: Iterable[tuple[bytes | None, int]], horizon: int) -> None:
    """Restore's duplicate detection: remember the event ids of ``(value, record_ts)`` within ``horizon``."""
    for value, record_ts in records:
        raw = value or b""
        if not st.remember(raw, record_ts, horizon):
            event = validate(raw, record_ts)
            if isinstance(event, Event):
                st.remember_id(event.event_id, event.user_id, event.ts, horizon)
