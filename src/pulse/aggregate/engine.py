"""The aggregator loop: consume a batch → update partition state → on each flush, one Kafka transaction.

Each flush is one checkpoint (``checkpoint``): side outputs, forwarded records, changelog, documents, decisions
and the consumer positions, atomically. A crash at any moment therefore resumes from a consistent (state, offsets)
pair; zombies are fenced by group metadata. Rebalance callbacks run inside ``consume()``, between batches, so no
transaction is ever open in them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, TopicPartition

from pulse.aggregate import decisions
from pulse.aggregate.assignment import Assignment
from pulse.aggregate.checkpoint import Checkpoint, PartitionOutput, Topics
from pulse.aggregate.flush_policy import FlushPolicy
from pulse.aggregate.group import Membership, session_timeout_s
from pulse.aggregate.idle import IdleRule
from pulse.aggregate.observed import EngineMetrics
from pulse.aggregate.pacing import Pacer
from pulse.aggregate.partition import EVERY_USER, Details, Partition, StateConfig, flush_each, route_batch, settle
from pulse.aggregate.positions import GroupProgress, ReadPositions
from pulse.aggregate.repartition import ForwardedInput
from pulse.aggregate.stalls import StallRule
from pulse.aggregate.transactions import Flushed
from pulse.kafkaio import admin_client
from pulse.topics import (
    aggregates_topic,
    changelog_topic,
    dead_letter_topic,
    decisions_topic,
    late_topic,
    repartition_topic,
)

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
    # stale anyway, and each flush re-publishes every window it touched, a cost that would dominate a backlog read;
    # it is published at once when read to its end
    backlog_flush_interval_s: float = 5.0
    detail_interval_s: float = 5.0  # item and user documents are published at most this often (coalesced)
    detail_flushes: int | None = None  # instead: every Nth flush (deterministic cadence for benchmarks)
    # User documents go out every flush, oldest change first, within a budget per partition: this many per 1000
    # events it accepted since its last flush, and at least `user_floor` (see FlushPolicy.users_budget)
    user_writes_per_1000: float = 20.0
    user_floor: int = 5
    idle_timeout_s: float = 10.0
    stall_timeout_s: float = 60.0  # a source's watermark unmoved this long: its owners treat it as idle
    batch_size: int = 20_000
    transaction_timeout_ms: int = 20_000
    start_ms: int | None = None  # a partition without committed state starts at this record time (replay)
    flush_records: int | None = None  # also flush after this many records (benchmarks simulating a live rate)
    clock_per_flush_s: float | None = None  # benchmarks simulating a live rate: the wall clock a flush stands for

    @property
    def transactional_id(self) -> str:
        """This instance's: a restarted instance reclaims it, and so fences its crashed predecessor."""
        return f"{self.group}-{self.instance}"

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
        return dead_letter_topic(self.topic)

    @property
    def late_topic(self) -> str:
        return late_topic(self.topic)


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
    """One aggregator instance: the consume loop, routing, and the flushes it times. Call :meth:`run` with a stop
    event; it returns after a final flush. Its collaborators each have one job: the :class:`Checkpoint` (the
    transaction), the :class:`Assignment` (owned partitions and their states), the :class:`FlushPolicy` (when to
    flush and what to publish), the :class:`IdleRule` (quiet partitions close their windows), and
    :class:`ReadPositions` and :class:`GroupProgress` (where reading stands, here and in the group)."""

    def __init__(self, cfg: EngineConfig, on_flush: Callable[[EngineStats], None] | None = None,
                 prepare: Callable[[], object] | None = None, membership: Membership | None = None) -> None:
        """``prepare``: start-up work that runs while the consumer joins its group (creating the side topics);
        the first transaction begins only once it is done. ``membership``: the group, if already joining (the
        command line subscribes before it imports the engine); otherwise it is joined here."""
        self.cfg = cfg
        self._started_ms = int(time.time() * 1000)
        self._prepare = prepare
        self._prepared: Future[object] | None = None
        self.stats = EngineStats()
        self._on_flush = on_flush
        self._routing = False  # a batch handed to the routing thread and not yet settled
        self._broken = False  # run() is stopping on an error
        self._drained: set[int] = set()  # partitions published on their own during the current backlog
        self._membership = membership or Membership(cfg.bootstrap, cfg.group, cfg.topic)
        if self._membership.topic != cfg.topic:
            raise ValueError(f"the group was joined for {self._membership.topic}, not {cfg.topic}")
        self._consumer = self._membership.consumer
        self._admin = admin_client(cfg.bootstrap)
        self._forwarded_in = ForwardedInput(cfg.bootstrap, cfg.repartition_topic)
        self.positions = ReadPositions(self._consumer, self._admin, cfg.topic, cfg.repartition_topic,
                                       self._forwarded_in)
        self.group_progress = GroupProgress(self._consumer, self._admin, cfg.topic, cfg.group,
                                   session_timeout_s(cfg.bootstrap, cfg.group))
        self.metrics = EngineMetrics(self.positions.high_watermark)
        self.joined = False  # the group gave this instance its first assignment (possibly empty)
        self.checkpoint = Checkpoint(cfg.bootstrap, cfg.transactional_id, cfg.transaction_timeout_ms,
                                     Topics(cfg.topic, cfg.changelog_topic, cfg.aggregates_topic, cfg.decisions_topic,
                                            cfg.repartition_topic, cfg.dlq_topic, cfg.late_topic))
        self.idle = IdleRule(cfg.topic, cfg.idle_timeout_s, cfg.state.grace_ms)
        self.stalls = StallRule(cfg.topic, cfg.stall_timeout_s)
        self.pacer = Pacer(self._consumer, cfg.topic, cfg.state.forward_wait_ms)
        self.assignment = Assignment(cfg.bootstrap, cfg.topic, cfg.changelog_topic, cfg.repartition_topic, cfg.state,
                                     self._consumer, self._admin, self._forwarded_in, self._loaded,
                                     cfg.transactional_id, cfg.group, cfg.start_ms)
        self.policy = FlushPolicy(cfg.flush_interval_s, cfg.backlog_flush_interval_s, cfg.batch_size,
                                  cfg.flush_records, cfg.detail_interval_s, cfg.detail_flushes,
                                  cfg.user_writes_per_1000, cfg.user_floor)

    @property
    def states(self) -> dict[int, Partition]:
        return self.assignment.states

    # -- lifecycle --------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, exit_when_idle_s: float | None = None) -> EngineStats:
        """Consume and flush until ``stop`` is set (or, if given, no input arrived for ``exit_when_idle_s``)."""
        self.checkpoint.start()  # overlaps the join and restore
        if self._prepare is not None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="pulse-prepare")
            self._prepared = pool.submit(self._prepare)
            pool.shutdown(wait=False)  # the thread ends with the task
        self._membership.attach(self._on_assign, self._on_revoke, self._on_lost)
        policy = self.policy
        policy.last_flush = self._last_activity = time.monotonic()
        try:
            while not stop.is_set():
                if self._prepared is not None and self._prepared.done():
                    self._await_prepared()  # raises its error, if any
                interval = policy.interval
                batch = self._consumer.consume(policy.batch, policy.wait_s())
                policy.consumed(len(batch), _age_s(batch[-1]) if batch else None)
                if batch:
                    self._process(batch)
                    self._last_activity = time.monotonic()
                    if policy.behind:
                        self._flush_drained()
                elif exit_when_idle_s is not None and self._idle_for() > exit_when_idle_s and self._caught_up():
                    break
                # publish on the flush interval, and at once when a backlog has just been read to its end (a live
                # stream, never behind, keeps the interval: more flushes would cost more writes downstream)
                # (a backlog read to its end in full batches is seen at once, not after one more consume's wait)
                caught_up = policy.behind and (not policy.full or self._fetched_to_end()) and self._at_end()
                # records forwarded here wait for a flush: with no input to read, take them soon
                forwarded = not batch and policy.since_flush_s() >= FORWARDED_WAIT_S and self._forwarded()
                if policy.due(interval, caught_up or forwarded):
                    self.flush(wait=False)  # the commit overlaps the next batches
                    self.pacer.pace(self.states)  # here, not in flush: never inside a rebalance callback
                    policy.flushed(caught_up)
                    if caught_up:
                        self._drained.clear()
            self.flush(details=True)
        except BaseException:
            self._broken = True  # leaving the group must not try another transaction and hide this error
            raise
        finally:
            self._consumer.close()  # leaves the group (revoke → flush already done above)
            self._forwarded_in.close()
            self.assignment.close()
        return self.stats

    def _await_prepared(self) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.result()

    def _at_end(self) -> bool:
        """Every owned partition read to its end as last fetched."""
        self._routed()
        self.positions.skip_passed(self.states)
        return self.positions.at_end(self.states)

    def _fetched_to_end(self) -> bool:
        return self.positions.fetched_to_end(list(self.states))

    def _forwarded(self) -> bool:
        self._routed()
        return self.positions.forwarded_waiting(self.states)

    def _idle_for(self) -> float:
        """Seconds without input while owning partitions (waiting for an assignment counts only after 60s)."""
        idle = time.monotonic() - self._last_activity
        return idle if self.states else idle - 60

    def _caught_up(self) -> bool:
        """True when the whole group has committed every input partition to its end and every partition is owned
        by a live member, this instance's with its forwarded records taken (checked only when idle). So a batch
        run does not stop while partitions still wait for reassignment: records forwarded to them are taken only
        by their owner, after the input that forwarded them was committed."""
        self.flush(details=True)
        if self.group_progress.committed_to_end() and self.positions.forwarded_drained(self.states) \
                and self.group_progress.owners_settled(set(self.states)):
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
        if self.checkpoint.committing:
            return
        self.positions.skip_passed({p: st for p, st in self.states.items() if not st.busy})  # settled ones
        drained = []
        for p, position, high in self.positions.read(list(self.states)):
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
        the last call count as active now (for the idle rule)."""
        if not self._routing:
            return
        self._routing = False
        settle()
        self.idle.routed(self.states)

    # -- flush: one transaction -------------------------------------------------------------------------------
    def flush(self, details: bool = False, wait: bool = True, only: list[int] | None = None) -> None:
        """One transaction; a complete flush (``details``: stop, revoke, caught up) that has more user documents to
        send than one transaction takes (the native core's USERS_PER_FLUSH) goes on, a transaction per chunk,
        until every user is published. A loop, so each chunk's documents are released before the next one's are
        rendered."""
        while self._flush_once(details, wait, only):
            pass

    def _flush_once(self, details: bool, wait: bool, only: list[int] | None) -> bool:
        """One transaction; whether a complete flush has user documents left for another one. Item and user
        documents go out on a details flush (``details`` or when the detail interval has passed); in between their
        changes are only in the changelog, so a crash loses nothing (restore re-publishes what was logged after
        the last published marker).

        With ``wait=False`` the commit runs in the background while the caller goes on consuming: the state
        hands its changes over when they are sent, and a failed commit reloads every partition from the
        changelog and seeks back, which discards whatever was processed meanwhile as well.

        ``only``: just these partitions (settled, so in no batch being routed), without details, while the others
        keep routing (see :meth:`_flush_drained`)."""
        if only is None:
            self._routed()
            self.positions.skip_passed(self.states)
        self._settle()
        self._await_prepared()
        self.checkpoint.ready()
        started = time.monotonic()
        now_wall = self._wall_ms()
        complete = details  # stop, revoke, caught up: publish everything
        decided: dict[int, list[bytes]] = {}
        if only is not None:
            parts = [self.states[p] for p in only]
        else:
            decided = self._take_forwarded(now_wall)
            for p, decision in self.idle.advance(self.states, now_wall, self.positions.nothing_to_read).items():
                decided.setdefault(p, []).append(decision)
            for p, stalls in self.stalls.check(self.states, now_wall).items():
                decided.setdefault(p, []).extend(stalls)
            parts = list(self.states.values())
            details = details or self.policy.details_due(self.stats.flushes)
        before = sum(st.pending_users() for st in parts)
        users_due = [EVERY_USER if complete else self.policy.users_budget(st.partition, st.counters.accepted)
                     for st in parts]
        items = Details.ALL if complete else Details.DUE if details else Details.CLOSING
        try:
            group_metadata = self._consumer.consumer_group_metadata()
        except RuntimeError:  # the consumer is closing and has left its group: no transaction can carry positions
            _LOG.info("no last flush: the consumer has left its group; the partitions' next owner redoes what this "
                      "instance had not committed")
            return False
        outputs = self._outputs(parts, items, users_due, now_wall, decided)
        first = next(outputs, None)
        if first is None:
            return False
        positions = [TopicPartition(self.cfg.topic, st.partition, st.next_offset) for st in parts
                     if st.next_offset > 0]
        positions += [TopicPartition(self.cfg.repartition_topic, st.partition, st.repartition_offset)
                      for st in parts if st.repartition_offset > 0]
        try:
            self.checkpoint.write(positions, group_metadata, chain([first], outputs))
        except KafkaException as exc:
            self._transaction_failed(exc.args[0])
            return False
        if details:
            self.policy.details_sent()
        self.metrics.flushed(time.monotonic() - started)
        if wait:
            self._settle()
        pending = sum(st.pending_users() for st in parts)
        return complete and only is None and 0 < pending < before

    def _outputs(self, parts: list[Partition], items: Details, users: list[int], now_wall: int,
                 decided: dict[int, list[bytes]]) -> Iterator[PartitionOutput]:
        """Each partition's flush that has something to write, rendered as the transaction takes them."""
        for st, flushed in flush_each(parts, items, users, now_wall):
            if flushed is None:
                continue
            st.handed_over()  # a failed transaction reloads the state (_settle)
            yield PartitionOutput(
                Flushed(st.partition, len(flushed.records), [d.kind for d in flushed.documents],
                        sum(batch.records for batch in flushed.forward), st.counters, st.next_offset),
                flushed, decided.get(st.partition, []))

    def _wall_ms(self) -> int:
        """The flush's wall clock; a benchmark that simulates a live rate simulates its clock too
        (``clock_per_flush_s``), so that cadences in wall time (item shards) keep their meaning."""
        if self.cfg.clock_per_flush_s is not None:
            return self._started_ms + round(self.stats.flushes * self.cfg.clock_per_flush_s * 1000)
        return int(time.time() * 1000)

    def _settle(self) -> None:
        """Wait for the commit in flight, if any; count it, or recover from its failure."""
        commit = self.checkpoint.settle()
        if commit is None:
            return
        if commit.error is not None:
            self._transaction_failed(commit.error)
            return
        for flushed in commit.work:
            self.stats.forwarded += flushed.forwarded
            self.stats.docs += len(flushed.kinds)
            self.stats.docs_by_kind.update(flushed.kinds)
            self.stats.changelog_records += flushed.changelog_records
        self.stats.flushes += 1
        self.metrics.committed(commit, self.states)
        if self._on_flush:
            self._on_flush(self.stats)

    def _transaction_failed(self, err: KafkaError) -> None:
        """A transaction that cannot commit leaves no trace: the checkpoint ends it, then every partition is
        reloaded from the changelog and the input read again from the committed positions."""
        self._routed()  # reloading replaces the states: nothing may still be routing into them
        self.checkpoint.failed(err)
        self.assignment.reload(list(self.states))

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
            if st.repartition_offset != before[p]:  # not input activity: the partition may still be an idle source
                self._last_activity = now
                taken[p] = [decisions.encode(decisions.Decision(self.cfg.topic, p, st.next_offset,
                                                                taken_until=st.repartition_offset,
                                                                decided_at=now_wall))]
        return taken

    # -- rebalancing ------------------------------------------------------------------------------------------
    def _loaded(self, st: Partition, restore_seconds: float | None) -> None:
        self.metrics.loaded(st, restore_seconds)
        self.idle.active(st.partition)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._routed()
        self.stats.rebalances += 1
        self._drained.clear()
        self._last_activity = time.monotonic()
        self.pacer.reset()
        self.assignment.assign(consumer, partitions)
        self.stats.restored_keys = self.assignment.restored_keys
        self._last_activity = time.monotonic()
        self.joined = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._broken:  # stopping on an error: the next owner redoes the uncommitted work
            self._routed()
            self.metrics.released(self.assignment.release(consumer, partitions))
            return
        _LOG.info("rebalance: handing over partitions %s after a last flush", sorted(tp.partition for tp in partitions))
        # Without details: what is left unpublished is in the changelog as such, and whoever owns the partition next
        # publishes it in its turn, as after a crash. Publishing every pending user here would hold up the whole
        # group's rebalance by as many documents as the user budget has deferred (hundreds of thousands at a
        # million users).
        self.flush()
        self.metrics.released(self.assignment.release(consumer, partitions, committed=not self._broken))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _LOG.warning("rebalance: partitions %s were lost (their uncommitted work is redone by the new owner)",
                     sorted(tp.partition for tp in partitions))
        self._routed()
        self.metrics.released(self.assignment.release(consumer, partitions))


def _age_s(msg: Message) -> float | None:
    """How long ago the broker took ``msg`` (its producer's clock on a CreateTime topic), if it says."""
    kind, ts = msg.timestamp()
    return time.time() - ts / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and ts > 0 else None


FORWARDED_WAIT_S = 0.1
"""With no input to read, records forwarded to this instance's partitions are taken after this long (else at the
next flush): the last records of a backlog need not wait a whole flush interval."""
FORWARDED_BATCHES = 5
"""A flush takes at most this many input batches' worth of repartition topic records, each a batch of forwarded
records (the rest at the next one)."""
