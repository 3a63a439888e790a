"""The aggregator loop: consume a batch → update partition state → on each flush, one Kafka transaction.

A flush writes, atomically: dead letters and late events, records forwarded to the partition that owns their user
(input not keyed by user id, see ``repartition``), changed state to the compacted changelog, changed documents to
the aggregates topic, and the consumer positions (``send_offsets_to_transaction``). A crash at
any moment therefore resumes from a consistent (state, offsets) pair; zombies are fenced by group metadata.
Rebalance callbacks run inside ``consume()``, between batches, so no transaction is ever open in them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pulse.aggregate import decisions
from pulse.aggregate.group import Membership
from pulse.aggregate.observed import EngineMetrics
from pulse.aggregate.repartition import ForwardedInput, headers
from pulse.aggregate.restore import restore_partition
from pulse.aggregate.state import Partition, StateConfig, flush_all, new_partition, route_batch, settle
from pulse.aggregate.transactions import Commit, Flushed, patiently, send_offsets, transactional_producer
from pulse.errors import PulseError
from pulse.kafkaio import admin_client, end_offsets, group_caught_up, offsets_at, watermarks
from pulse.kafkastart import start_where_committed
from pulse.topics import aggregates_topic, changelog_topic, decisions_topic, repartition_topic

_LOG = logging.getLogger("pulse.aggregate")


@dataclass(frozen=True)
class EngineConfig:
    bootstrap: str
    topic: str
    group: str = "pulse-aggregator"
    instance: str = "0"  # makes the transactional id; a restarted instance reuses it and fences its past self
    state: StateConfig = field(default_factory=StateConfig)
    flush_interval_s: float = 1.0
    # while reading a backlog (full batches since it last caught up) flushes come at most this often: a backlog is
    # stale anyway, and each flush re-publishes every window it touched (measured: 0.25 s of a 1.5 s read of
    # 300k events); it is published at once when read to its end
    backlog_flush_interval_s: float = 5.0
    detail_interval_s: float = 5.0  # item and user documents are published at most this often (coalesced)
    detail_flushes: int | None = None  # instead: every Nth flush (deterministic cadence for benchmarks)
    # User documents go out with the details while at most `user_batch` changed per partition; beyond that
    # (heavy traffic: one write per active user) at most every `user_interval_s`, to bound write cost.
    user_batch: int = 1000
    user_interval_s: float = 30.0
    user_flushes: int | None = None  # instead: every Nth flush (benchmarks)
    idle_timeout_s: float = 10.0
    batch_size: int = 20_000
    transaction_timeout_ms: int = 20_000
    start_ms: int | None = None  # a partition without committed state starts at this record time (replay)
    flush_records: int | None = None  # also flush after this many records (benchmarks simulating a live rate)

    @property
    def changelog_topic(self) -> str:
        return changelog_topic(self.group)

    @property
    def aggregates_topic(self) -> str:
        return aggregates_topic(self.group)

    @property
    def decisions_topic(self) -> str:
        return decisions_topic(self.group)

    @property
    def repartition_topic(self) -> str:
        return repartition_topic(self.group)

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def late_topic(self) -> str:
        return f"{self.topic}.late"


@dataclass
class EngineStats:
    consumed: int = 0
    flushes: int = 0
    drained: int = 0  # partitions published on their own as a backlog was read to their end
    docs: int = 0
    docs_by_kind: Counter[str] = field(default_factory=Counter)
    changelog_records: int = 0
    forwarded: int = 0  # records sent to the partition that owns their user (committed)
    restored_keys: int = 0
    rebalances: int = 0


class Engine:
    """One aggregator instance. Call :meth:`run` with a stop event; it returns after a final flush."""

    def __init__(self, cfg: EngineConfig, on_flush: Callable[[EngineStats], None] | None = None,
                 prepare: Callable[[], object] | None = None, membership: Membership | None = None) -> None:
        """``prepare``: start-up work that runs while the consumer joins its group (creating the side topics);
        the first transaction begins only once it is done. ``membership``: the group, if already joining (the
        command line subscribes before it imports the engine); otherwise it is joined here."""
        self.cfg = cfg
        self._prepare = prepare
        self._prepared: Future[object] | None = None
        self.stats = EngineStats()
        self.states: dict[int, Partition] = {}
        self._last_record_wall: dict[int, float] = {}
        self._last_details = time.monotonic()
        self._users_at: dict[int, float] = {}  # partition → when its user documents last went out
        self._admin = admin_client(cfg.bootstrap)
        self._on_flush = on_flush
        self._txn_init: threading.Thread | None = None
        self._txn_error: KafkaError | None = None
        self._commit: Commit | None = None
        self._routing = False  # a batch handed to the routing thread and not yet settled
        self._processed: dict[int, int] = {}  # records processed per partition when last settled
        self._drained: set[int] = set()  # partitions published on their own during the current backlog
        self._membership = membership or Membership(cfg.bootstrap, cfg.group, cfg.topic)
        if self._membership.topic != cfg.topic:
            raise ValueError(f"the group was joined for {self._membership.topic}, not {cfg.topic}")
        self._consumer = self._membership.consumer
        self._producer = self._new_producer()
        self._renewals: list[float] = []  # when the producer was last replaced after a fatal error
        self._partition_count = 0  # the input topic's, read on assignment
        self._forwarded_in = ForwardedInput(cfg.bootstrap, cfg.repartition_topic)
        self._forwarding: set[int] = set()  # partitions that said they forward records
        self.metrics = EngineMetrics(self._high_watermark)
        self.joined = False  # the group gave this instance its first assignment (possibly empty)

    def _new_producer(self) -> Producer:
        cfg = self.cfg
        return transactional_producer(cfg.bootstrap, f"{cfg.group}-{cfg.instance}", cfg.transaction_timeout_ms)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, exit_when_idle_s: float | None = None) -> EngineStats:
        """Consume and flush until ``stop`` is set (or, if given, no input arrived for ``exit_when_idle_s``)."""
        # fencing our predecessor's transactions (librdkafka often takes 0.5 s) overlaps the join and restore
        self._txn_init = threading.Thread(target=self._init_transactions, name="pulse-txn-init", daemon=True)
        self._txn_init.start()
        if self._prepare is not None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="pulse-prepare")
            self._prepared = pool.submit(self._prepare)
            pool.shutdown(wait=False)  # the thread ends with the task
        self._membership.attach(self._on_assign, self._on_revoke, self._on_lost)
        last_flush = self._last_activity = time.monotonic()
        since_flush, flush_records = 0, self.cfg.flush_records or 2**62
        batch_size = min(self.cfg.batch_size, flush_records)
        # behind: a full batch since the last caught-up flush, i.e. reading a backlog (timed flushes on the way
        # do not reset it, or a backlog whose last full batch met a timed flush waited a whole interval at its end)
        full = behind = False
        try:
            while not stop.is_set():
                if self._prepared is not None and self._prepared.done():
                    self._await_prepared()  # raises its error, if any
                interval = max(self.cfg.flush_interval_s, self.cfg.backlog_flush_interval_s if behind else 0)
                due = last_flush + interval - time.monotonic()  # flush on time, not 0.2 s late
                # reading a backlog: take what has arrived rather than wait for a full batch at its tail
                batch = self._consumer.consume(batch_size, 0.02 if full else max(0.01, min(0.2, due)))
                full = len(batch) >= batch_size
                behind = behind or full
                if batch:
                    self._process(batch)
                    self._last_activity = time.monotonic()
                    if behind:
                        self._flush_drained()
                elif exit_when_idle_s is not None and self._idle_for() > exit_when_idle_s and self._caught_up():
                    break
                since_flush += len(batch)
                # publish on the flush interval, and at once when a backlog has just been read to its end (a live
                # stream, never behind, keeps the interval: more flushes would cost more writes downstream)
                # (a backlog read to its end in full batches is seen at once, not after one more consume's wait)
                caught_up = behind and (not full or self._fetched_to_end()) and self._at_end()
                # records forwarded here wait for a flush: with no input to read, take them soon
                forwarded = not batch and time.monotonic() - last_flush >= FORWARDED_WAIT_S and self._forwarded()
                if time.monotonic() - last_flush >= interval or since_flush >= flush_records \
                        or caught_up or forwarded:
                    self.flush(wait=False)  # the commit overlaps the next batches
                    last_flush, since_flush, behind = time.monotonic(), 0, behind and not caught_up
                    if caught_up:
                        self._drained.clear()
            self.flush(details=True)
        finally:
            self._consumer.close()  # leaves the group (revoke → flush already done above)
            self._forwarded_in.close()
        return self.stats

    def _init_transactions(self) -> None:
        try:
            patiently(lambda: self._producer.init_transactions(60), "start transactions")
        except KafkaException as exc:
            self._txn_error = exc.args[0]

    def _await_prepared(self) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.result()

    def _transactions_ready(self) -> None:
        """Wait for init_transactions before the first flush. Restoring need not wait: a crashed predecessor's
        open transaction holds read_committed reads of the changelog until init_transactions aborts it."""
        self._await_prepared()
        if self._txn_init is not None:
            self._txn_init.join()
            self._txn_init = None
            if self._txn_error is not None:
                raise PulseError(f"cannot start Kafka transactions at {self.cfg.bootstrap}: {self._txn_error.str()}")

    def _at_end(self) -> bool:
        """Every owned partition read to its high watermark as last fetched (a local lookup, no request)."""
        self._routed()
        for p, st in self.states.items():
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.cfg.topic, p), cached=True)
            if high < 0 or st.next_offset < high:
                return False
        return True

    def _read_positions(self) -> list[tuple[int, int, int]]:
        """(partition, consumer position, high watermark as last fetched) of every owned partition: local
        lookups, without waiting for the routing threads. A partition not read from yet is at 0; an unknown
        high watermark is negative."""
        positions = self._consumer.position([TopicPartition(self.cfg.topic, p) for p in self.states])
        return [(tp.partition, max(tp.offset, 0), self._consumer.get_watermark_offsets(tp, cached=True)[1])
                for tp in positions]

    def _fetched_to_end(self) -> bool:
        """Every owned partition consumed up to its high watermark as last fetched."""
        positions = self._read_positions()
        return bool(positions) and all(0 <= high <= position for _, position, high in positions)

    def _forwarded(self) -> bool:
        """Records forwarded to an owned partition wait to be taken (as last fetched: no request)."""
        self._routed()
        return any(self._forwarded_in.pending(p, st.repartition_offset) for p, st in self.states.items())

    def _idle_for(self) -> float:
        """Seconds without input while owning partitions (waiting for an assignment counts only after 60s)."""
        idle = time.monotonic() - self._last_activity
        return idle if self.states else idle - 60

    def _caught_up(self) -> bool:
        """True when the whole group has committed every input partition to its end (checked only when idle),
        so a batch run does not stop while another member's partitions still wait for reassignment."""
        self.flush(details=True)
        positions = {p: st.repartition_offset for p, st in self.states.items()}
        if group_caught_up(self._consumer, self._admin, self.cfg.topic, transactional=False) \
                and self._forwarded_in.drained(positions):
            return True
        self._last_activity = time.monotonic()
        return False

    def _process(self, batch: list) -> None:
        """Start routing ``batch`` on the native routing thread; it goes on while the next batch is consumed. The
        router reads the next batch's messages before it waits for this one, so that reading overlaps routing."""
        route_batch(self.states, batch, wait=False)
        self._routing = True
        self.stats.consumed += len(batch)

    def _flush_drained(self) -> None:
        """While a backlog is read, publish each partition as soon as it is read to its end and routed, in a
        transaction of its own, while the routing thread goes on with the next partitions (a consumer reads a
        backlog partition after partition). Each document is owned by one partition, so this commits the same
        results as one flush at the end, but most of that flush's work overlaps the reading instead of following
        it. Once per partition and backlog (a partition that live traffic keeps at its end while others are still
        behind waits for the regular flushes), one transaction at a time (with a commit still running, the
        partition waits for the next batch)."""
        if self._commit is not None and self._commit.thread.is_alive():
            return
        drained = []
        for p, position, high in self._read_positions():
            st = self.states.get(p)
            if st is None or st.busy:
                continue
            if 0 < high <= position and st.next_offset >= high and p not in self._drained:
                self._drained.add(p)
                drained.append(p)
        if drained:
            self.stats.drained += len(drained)
            self.flush(wait=False, only=drained)

    def _routed(self) -> None:
        """Wait for the batches being routed: until then their partitions are the routing thread's (their methods
        raise), so everything that reads or changes state calls this first. Partitions that took records since
        the last call count as active now (for idle-partition closing)."""
        if not self._routing:
            return
        self._routing = False
        settle()
        now = time.monotonic()
        for p, st in self.states.items():
            if st.processed != self._processed.get(p):
                self._processed[p] = st.processed
                self._last_record_wall[p] = now

    # -- flush: one transaction -------------------------------------------------------------------------------
    def flush(self, details: bool = False, wait: bool = True, only: list[int] | None = None) -> None:
        """One transaction. Item and user documents go out on a details flush (``details`` or when the detail
        interval has passed); in between their changes are only in the changelog, so a crash loses nothing
        (restore re-publishes what was logged after the last published marker).

        With ``wait=False`` the commit runs in the background while the caller goes on consuming: the state
        hands its changes over when they are sent, and a failed commit reloads every partition from the
        changelog and seeks back, which discards whatever was processed meanwhile as well.

        ``only``: just these partitions (settled, so in no batch being routed), without details, while the others
        keep routing (see :meth:`_flush_drained`)."""
        if only is None:
            self._routed()
        self._settle()
        self._transactions_ready()
        started = time.monotonic()
        now_wall = int(time.time() * 1000)
        complete = details  # stop, revoke, caught up: publish everything
        decided: dict[int, list[bytes]] = {}
        if only is not None:
            parts = [self.states[p] for p in only]
        else:
            decided = self._take_forwarded(now_wall)
            for p, decision in self._advance_idle(now_wall).items():
                decided.setdefault(p, []).append(decision)
            parts = list(self.states.values())
            if self.cfg.detail_flushes:
                details = details or (self.stats.flushes + 1) % self.cfg.detail_flushes == 0
            else:
                details = details or time.monotonic() - self._last_details >= self.cfg.detail_interval_s
        work = []
        users_due = [complete or (details and self._users_due(st)) for st in parts]
        for st, users, flushed in zip(parts, users_due, flush_all(parts, details, users_due, now_wall), strict=True):
            if flushed is not None:
                st.committed(details, users)  # handed over; a failed transaction reloads the state (_settle)
                work.append((st, users, *flushed))
        if not work:
            return
        try:
            self._producer.begin_transaction()
            # positions first, while the broker is idle: behind this flush's records they wait ~0.1-0.7 s
            positions = [TopicPartition(self.cfg.topic, st.partition, st.next_offset) for st in parts
                         if st.next_offset > 0]
            positions += [TopicPartition(self.cfg.repartition_topic, st.partition, st.repartition_offset)
                          for st in parts if st.repartition_offset > 0]
            if positions:
                send_offsets(self._producer, positions, self._consumer.consumer_group_metadata())
            for st, _users, records, out, dead, late, forward in work:
                self._write_partition(st.partition, records, out, dead, late, forward)
                for decision in decided.get(st.partition, ()):
                    self._send(self.cfg.decisions_topic, decision, None, st.partition)
        except KafkaException as exc:
            self._transaction_failed(exc.args[0])
            return
        if details:
            self._last_details = time.monotonic()
        self._commit = Commit(self._producer, [
            Flushed(st.partition, users, len(records), [kind for _, kind, _ in out], len(forward), tuple(st.counters),
                    st.next_offset) for st, users, records, out, _dead, _late, forward in work])
        self.metrics.flushed(time.monotonic() - started)
        if wait:
            self._settle()

    def _settle(self) -> None:
        """Wait for the commit in flight, if any; count it, or recover from its failure."""
        commit, self._commit = self._commit, None
        if commit is None:
            return
        commit.thread.join()
        if commit.error is not None:
            self._transaction_failed(commit.error)
            return
        for flushed in commit.work:
            if flushed.users:
                self._users_at[flushed.partition] = time.monotonic()
            self.stats.forwarded += flushed.forwarded
            self.stats.docs += len(flushed.kinds)
            self.stats.docs_by_kind.update(flushed.kinds)
            self.stats.changelog_records += flushed.changelog_records
        self.stats.flushes += 1
        self.metrics.committed(commit, self.states)
        if self._on_flush:
            self._on_flush(self.stats)

    def _users_due(self, st: Partition) -> bool:
        if st.pending_users() <= self.cfg.user_batch:
            return True
        if self.cfg.user_flushes:
            return (self.stats.flushes + 1) % self.cfg.user_flushes == 0
        last = self._users_at.setdefault(st.partition, time.monotonic())
        return time.monotonic() - last >= self.cfg.user_interval_s

    def _write_partition(self, p: int, records: list, out: list, dead: list, late: list, forward: list) -> None:
        send, cfg = self._send, self.cfg
        for topic, sides in ((cfg.dlq_topic, dead), (cfg.late_topic, late)):
            for source, offset, key, value, reason, detail in sides:
                side_headers = _headers(offset, reason, detail, cfg.topic, source)
                if value is not None and len(value) > DEAD_LETTER_BYTES:
                    value, side_headers = _truncated(value, side_headers)
                send(topic, value, key, p, side_headers)
        if forward and p not in self._forwarding:
            self._forwarding.add(p)
            _LOG.info("partition %d: forwarding records not keyed by user id to the partitions that own their users, "
                      "through %s (see the README, \"Input from your own producers\")", p, cfg.repartition_topic)
        produce, repartition = self._producer.produce, cfg.repartition_topic
        for owner, user, value, offset, record_ts in forward:
            forwarded_headers = headers(p, offset, record_ts)
            try:
                produce(repartition, value, user, owner, headers=forwarded_headers)
            except BufferError:
                send(repartition, value, user, owner, forwarded_headers)
        self._produce_all(cfg.changelog_topic, p, records)
        self._produce_all(cfg.aggregates_topic, p, ((doc_id.encode(), value) for doc_id, _kind, value in out))

    def _produce_all(self, topic: str, p: int, records: Iterable[tuple[bytes, bytes]]) -> None:
        """A flush writes tens of thousands of these: produce directly (a wrapper call per record costs ~0.5 us
        of ~2.5), and wait for room only when the producer's queue is full."""
        produce = self._producer.produce
        for key, value in records:
            try:
                produce(topic, value, key, p)
            except BufferError:
                self._send(topic, value, key, p)

    def _send(self, topic: str, value: bytes | None, key: bytes | None, partition: int,
              headers: list[tuple[str, bytes]] | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition=partition, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _transaction_failed(self, err: KafkaError) -> None:
        """A transaction that cannot commit leaves no trace (read_committed readers never see it): end it, reload
        every partition from the changelog and read the input again from the committed positions.

        An abortable error (a rebalance, say) is aborted. A producer whose call timed out or failed for good (a
        broker restart: librdkafka can keep asking a coordinator that is gone, and the broker fences a transaction
        that outlived its timeout) is replaced: the new one's ``init_transactions`` ends whatever the old one left
        open. A few times at most, since an instance fenced by another one with the same transactional id would
        only fence it back."""
        self._routed()  # reloading replaces the states: nothing may still be routing into them
        if err.txn_requires_abort() and not err.fatal():
            _LOG.warning("transaction failed (%s); aborting it and reloading state from the changelog", err.str())
            patiently(lambda: self._producer.abort_transaction(60), "abort the transaction")
        elif err.fatal() or err.retriable() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            now = time.monotonic()
            self._renewals = [t for t in self._renewals if now - t < 600] + [now]
            if len(self._renewals) > 3:
                raise PulseError(f"this aggregator was fenced ({err.str()}): another instance uses transactional "
                                 f"id {self.cfg.group}-{self.cfg.instance}; give each instance its own --instance")
            _LOG.warning("transaction failed (%s); starting a new producer and reloading state from the changelog",
                         err.str())
            self._producer = self._new_producer()
            patiently(lambda: self._producer.init_transactions(60), "start transactions")
        else:
            raise PulseError(f"Kafka transaction failed: {err.str()}")
        self._reload(list(self.states))

    def _take_forwarded(self, now_wall: int) -> dict[int, list[bytes]]:
        """Take the records other partitions forwarded to the owned ones, as far as fetched, after everything read
        from the input so far; record for each partition where it took them (a decision: it depends on timing)."""
        batch = self._forwarded_in.take(FORWARDED_BATCHES * self.cfg.batch_size)
        if not batch:
            return {}
        before = {p: st.repartition_offset for p, st in self.states.items()}
        route_batch(self.states, batch, forwarded=True)
        now = time.monotonic()
        taken: dict[int, list[bytes]] = {}
        for p, st in self.states.items():
            if st.repartition_offset != before[p]:
                self._last_record_wall[p] = self._last_activity = now
                taken[p] = [decisions.encode(decisions.Decision(self.cfg.topic, p, st.next_offset,
                                                                taken_until=st.repartition_offset,
                                                                decided_at=now_wall))]
        return taken

    def _advance_idle(self, now_wall: int) -> dict[int, bytes]:
        """Close the open windows of partitions that are idle: no input for a while AND nothing left to read (a
        partition with a backlog is busy, not idle). A quiet partition's event time goes on from its last event
        at the pace of the wall clock, so a source that always arrives late by the same delay stays on time
        after a quiet spell; the watermark moves only as far as the end of the last window that closes. The
        decision goes to the changelog (restore) and, as one record per partition, to the decisions topic
        (`pulse verify`), in this flush's transaction. Returns those records by partition."""
        now = time.monotonic()
        decided: dict[int, bytes] = {}
        for p, st in self.states.items():
            quiet = now - self._last_record_wall.get(p, now)
            last_event = st.max_event_ts
            if quiet < self.cfg.idle_timeout_s or last_event is None:
                continue
            clock = last_event + int(quiet * 1000)
            floor = st.idle_floor(clock - self.cfg.state.grace_ms)
            if floor is None:
                continue
            # the fetcher's cached high watermark: a broker lookup would wait behind in-flight fetches
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.cfg.topic, p), cached=True)
            if high < 0:
                _, high = watermarks(self._consumer, self.cfg.topic, p)
            if st.next_offset >= high and not self._forwarded_in.pending(p, st.repartition_offset) \
                    and st.advance_to(floor):
                decided[p] = decisions.encode(decisions.Decision(self.cfg.topic, p, st.next_offset, floor=floor,
                                                                 clock=clock, decided_at=now_wall))
        return decided

    # -- rebalancing ------------------------------------------------------------------------------------------
    def _load(self, partition: int, logged: bool = True) -> Partition:
        st = new_partition(partition, self.cfg.state, self._partition_count)
        started = time.monotonic()
        if logged:
            keys = restore_partition(st, self.cfg.state, self.cfg.bootstrap, self.cfg.changelog_topic, self.cfg.topic,
                                     self.cfg.repartition_topic)
            self.stats.restored_keys += keys
            _LOG.info("partition %d restored: %d keys in %.2fs", partition, keys, time.monotonic() - started)
        self.metrics.loaded(st, time.monotonic() - started if logged else None)
        self._last_record_wall[partition] = time.monotonic()
        return st

    def _high_watermark(self, partition: int) -> int | None:
        """The input partition's end as last fetched (no request): for the lag metric."""
        try:
            high = self._consumer.get_watermark_offsets(TopicPartition(self.cfg.topic, partition), cached=True)[1]
        except (KafkaException, RuntimeError):  # RuntimeError: the consumer is closed (a scrape while stopping)
            return None
        return high if high >= 0 else None

    def _logged(self, partitions: list[int]) -> set[int]:
        """The partitions whose changelog ever had a record. A fresh group skips restore, which opens a reader per
        partition (about 0.1 s each).

        A changelog that does not exist yet was never written: on assignment, any previous owner of these
        partitions has already committed, and writing needs the topic. Checking that (a fresh metadata request for
        all topics, which never auto-creates one, on the consumer's connection: a new admin client's first request
        took 20-40 ms more) lets a fresh group start reading before the start-up thread has created its topics.
        Otherwise one batched end-offset lookup; the topic may have been created a moment ago by the start-up
        thread, and this client's metadata may predate it, so the lookup is retried for about a second before every
        partition is restored instead (measured: a failed first lookup cost 0.5 s)."""
        topics = self._consumer.list_topics(timeout=10).topics
        if self.cfg.topic in topics:
            self._partition_count = len(topics[self.cfg.topic].partitions)
        if self.cfg.changelog_topic not in topics:
            return set()
        for delay in (0.05, 0.1, 0.2, 0.3, 0.4, None):
            try:
                ends = end_offsets(self._admin, self.cfg.changelog_topic, partitions)
            except KafkaException:
                if delay is None:
                    return set(partitions)
                time.sleep(delay)
                continue
            return {p for p, end in ends.items() if end != 0}
        return set(partitions)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._routed()
        self.stats.rebalances += 1
        self._drained.clear()
        self._last_activity = time.monotonic()
        logged = self._logged([tp.partition for tp in partitions])
        fresh = []
        for tp in partitions:
            st = self.states[tp.partition] = self._load(tp.partition, tp.partition in logged)
            tp.offset = st.next_offset if st.next_offset > 0 else OFFSET_STORED
            if st.next_offset == 0 and self.cfg.start_ms is not None:
                fresh.append(tp)
        if fresh:
            starts = offsets_at(consumer, self.cfg.topic, [tp.partition for tp in fresh], self.cfg.start_ms)
            for tp in fresh:
                tp.offset = starts[tp.partition]
        start_where_committed(consumer, [tp for tp in partitions if tp.offset == OFFSET_STORED])
        consumer.assign(partitions)
        self._follow_forwarded()
        self._last_activity = time.monotonic()
        self.joined = True
        _LOG.info("assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _LOG.info("rebalance: handing over partitions %s after a last flush", sorted(tp.partition for tp in partitions))
        self.flush(details=True)
        for tp in partitions:
            self.states.pop(tp.partition, None)
        self.metrics.released([tp.partition for tp in partitions])
        consumer.unassign()
        self._follow_forwarded()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _LOG.warning("rebalance: partitions %s were lost (their uncommitted work is redone by the new owner)",
                     sorted(tp.partition for tp in partitions))
        self._routed()
        for tp in partitions:
            self.states.pop(tp.partition, None)  # uncommitted changes are replayed by the new owner
        self.metrics.released([tp.partition for tp in partitions])
        consumer.unassign()
        self._follow_forwarded()

    def _follow_forwarded(self) -> None:
        """Read the repartition topic's partitions of the owned partitions, from their states' positions."""
        self._forwarded_in.follow({p: st.repartition_offset for p, st in self.states.items()})

    def _reload(self, partitions: list[int]) -> None:
        for p in partitions:
            st = self.states[p] = self._load(p)
            if st.next_offset > 0:
                try:
                    self._consumer.seek(TopicPartition(self.cfg.topic, p, st.next_offset))
                except KafkaException:  # not assigned any more (the group moved on meanwhile): a rebalance follows
                    _LOG.info("partition %d was not sought back: no longer assigned", p)
        self._follow_forwarded()


FORWARDED_WAIT_S = 0.1
"""With no input to read, records forwarded to this instance's partitions are taken after this long (else at the
next flush): the last records of a backlog need not wait a whole flush interval."""
FORWARDED_BATCHES = 5
"""A flush takes at most this many input batches' worth of forwarded records (the rest at the next one)."""

DEAD_LETTER_BYTES = 64 * 1024
"""A dead letter keeps at most this much of its record (an input record can be up to the topic's limit, and the
dead letter's headers and batch must fit under the same limit); the rest is described by headers."""


def _truncated(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The first DEAD_LETTER_BYTES of ``value``, with headers giving its original size and SHA-256 digest."""
    return value[:DEAD_LETTER_BYTES], [*headers, ("pulse.original.size", str(len(value)).encode()),
                                       ("pulse.original.sha256", hashlib.sha256(value).hexdigest().encode()),
                                       ("pulse.truncated", b"true")]


def _headers(offset: int, reason: str, detail: str, topic: str, partition: int) -> list[tuple[str, bytes]]:
    """A dead letter's or late event's: why, and where it was read (a forwarded record: where first read)."""
    return [("pulse.reason", reason.encode()), ("pulse.detail", detail.encode()[:1024]),
            ("pulse.source.topic", topic.encode()), ("pulse.source.partition", str(partition).encode()),
            ("pulse.source.offset", str(offset).encode())]
