"""`pulse verify --follow`: the streamed verify beside a running pipeline, a round at a time.

Each round reads, in this order (each read makes the next one complete):
1. how far the aggregator group has committed each input partition (the *frontier*): its documents and timing
   decisions for everything before it are committed with it;
2. the group's decisions topic and repartition topic to their ends: every decision and forwarded record the
   input before the frontier needs;
3. the end of the group's aggregates topic, and waits (a round's worth) until the store group has committed it:
   then Elasticsearch holds every document the aggregator published for the input before the frontier.
Then each partition's walk goes on up to its frontier, and the windows it finishes (final: the owner watermark
passed their end) are diffed against Elasticsearch once the aggregator's published partition document shows it
closed them too (its watermark there passed their end: the flush that closes a window publishes all of it). Each
difference is logged with its document id and field, and counted.

A restart walks the input again as a range (:mod:`pulse.verify.ranges`) that begins one largest window before the
checked point saved in the state file, with the state before it rebuilt from a lead-in, and compares only windows
past that point, so nothing is reported twice. A window's revisions (corrections, summed) are compared once the
walk's owner watermark is a correction horizon past the window's end, when no correction can reach it any more
(after a restart, of windows ending past the checkpoint only). Users and items change for as long as their users
are active: they are checked by `pulse verify` without ``--follow``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from elasticsearch import ApiError, TransportError

from pulse.aggregate.decisions import decode as decode_decision
from pulse.aggregate.repartition import unpack
from pulse.errors import PulseError
from pulse.kafkaio import admin_client, end_offsets, lag_reader, reader
from pulse.observe.metrics import (
    VERIFY_CHECKED_UP_TO,
    VERIFY_INPUT_RECORDS,
    VERIFY_MISMATCHES,
    VERIFY_REVISIONS_CHECKED,
    VERIFY_ROUNDS,
    VERIFY_WINDOWS_CHECKED,
)
from pulse.store.heartbeat import Heartbeat
from pulse.store.indices import ensure_indices
from pulse.store.readback import partition_watermarks, refresh_windows
from pulse.topics import (
    aggregates_topic,
    decisions_topic,
    repartition_topic,
    store_group,
)
from pulse.verify.audit import Plan, RevisionDiff, WindowDiff
from pulse.verify.diff import DocDiff
from pulse.verify.native import NativeWalk
from pulse.verify.order import NEVER, Decision, Taken
from pulse.verify.source import as_decision, as_taken
from pulse.verify.walk import sent_markers

_LOG = logging.getLogger("pulse.verify")
READ_TIMEOUT_S = 60.0
RETRY_S = 5.0
_PASSING = {KafkaError._PARTITION_EOF, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}


class Tail:
    """A ``read_committed`` reader of every partition of a topic that keeps its place from one read to the next."""

    def __init__(self, bootstrap: str, topic: str, starts: dict[int, int]) -> None:
        self.topic = topic
        self._consumer = reader(bootstrap)
        self.position = dict(starts)
        self._held: dict[int, list[Message]] = {p: [] for p in starts}  # read past the last end asked for
        self._consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])

    def read(self, ends: dict[int, int]) -> dict[int, list[Message]]:
        """The records from where the last read stopped up to ``ends`` (exclusive), per partition."""
        out: dict[int, list[Message]] = {}
        for p, end in ends.items():
            held = self._held[p]
            cut = next((n for n, m in enumerate(held) if m.offset() >= end), len(held))
            out[p], self._held[p] = held[:cut], held[cut:]
        waiting = {p for p, end in ends.items() if self.position[p] < end and not self._held[p]}
        deadline = time.monotonic() + READ_TIMEOUT_S
        while waiting:
            for msg in self._consumer.consume(10_000, 0.05):
                p = msg.partition()
                err = msg.error()
                if err is not None:
                    if err.code() not in _PASSING and not err.retriable():
                        raise PulseError(f"reading {self.topic}[{p}] failed: {err.str()}")
                    continue  # the end for now, or a broker away (the client reconnects; the deadline bounds it)
                self.position[p] = msg.offset() + 1
                (out[p] if p in ends and msg.offset() < ends[p] else self._held[p]).append(msg)
                deadline = time.monotonic() + READ_TIMEOUT_S
            now = self._consumer.position([TopicPartition(self.topic, p) for p in waiting])
            for tp in now:
                self.position[tp.partition] = max(self.position[tp.partition], tp.offset)
            waiting = {p for p in waiting if self.position[p] < ends[p] and not self._held[p]}
            if waiting and time.monotonic() > deadline:
                raise PulseError(f"reading {self.topic} made no progress for {READ_TIMEOUT_S:.0f}s")
        return out

    def close(self) -> None:
        self._consumer.close()


@dataclass(frozen=True)
class Round:
    """What one round did: the records walked, the window documents compared and how many differed, or why it
    waited instead."""
    walked: int = 0
    checked: int = 0
    differences: int = 0
    waiting: str | None = None


class Checkpoint:
    """Where a follower got to: per partition, the window end up to which every window was compared."""

    def __init__(self, path: Path, plan: Plan) -> None:
        self.path = path
        self.key = {"topic": plan.topic, "group": plan.group, "index_prefix": plan.index_prefix}
        self.checked_to: dict[int, int] = {}
        if path.exists():
            saved = json.loads(path.read_text())
            if {k: saved.get(k) for k in self.key} != self.key:
                raise PulseError(f"{path} is the checkpoint of another verify ({saved.get('topic')}, "
                                 f"{saved.get('group')}, {saved.get('index_prefix')}): pass another --state-file")
            self.checked_to = {int(p): int(v) for p, v in saved["checked_to"].items()}

    def resume_from(self, partitions: list[int], largest_window: int) -> int | None:
        """Where a restart can start its range (None: from the beginning): every window ending past the checkpoint
        starts at most one largest window before it. Only once every partition has a checkpoint."""
        if not partitions or any(p not in self.checked_to for p in partitions):
            return None
        return min(self.checked_to[p] for p in partitions) - largest_window

    def save(self, checked_to: dict[int, int]) -> None:
        if checked_to == self.checked_to:
            return
        self.checked_to = dict(checked_to)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.key, "checked_to": {str(p): v for p, v in checked_to.items()}}))
        os.replace(tmp, self.path)


class Follower:
    """The walks of every input partition, kept between rounds, and the readers that feed them."""

    def __init__(self, plan: Plan, checkpoint: Checkpoint, on_difference: Callable[[str], None]) -> None:
        self.plan = plan
        self.checkpoint = checkpoint
        self.parts = sorted(plan.span)
        es = self._es = plan.es.client()
        self.diff = DocDiff(on_note=on_difference)
        self.walks: dict[int, NativeWalk] = {}
        self.windows: dict[int, WindowDiff] = {}
        self.revised: dict[int, RevisionDiff] = {}
        for p in self.parts:
            self.windows[p] = WindowDiff(es, p, plan.index_prefix, self.diff, checkpoint.checked_to.get(p), plan.scope)
            self.revised[p] = RevisionDiff(es, p, plan.index_prefix, self.diff, checkpoint.checked_to.get(p),
                                           plan.scope)
            self.walks[p] = NativeWalk(p, plan.rules, plan.window_sizes, plan.session_timeout_ms,
                                       plan.scope.unseen_before, self.windows[p].finished)
        self.inputs = Tail(plan.bootstrap, plan.topic, {p: plan.span[p][0] for p in self.parts})
        self._tails: dict[str, Tail] = {}
        self._committed = lag_reader(plan.bootstrap, plan.group)
        self._stored = lag_reader(plan.bootstrap, store_group(plan.group))
        self._admin = admin_client(plan.bootstrap)
        self._counts: dict[str, int] = {}  # partition counts of the group's topics, once they exist
        self._decided: dict[int, list[Decision]] = {}  # read, not walked yet: by input partition
        self._taken: dict[int, list[Taken]] = {}  # the repartition topic's records read, not walked yet: by owner
        # a frontier and the aggregates' ends after it, until the store has written up to them
        self._held: tuple[dict[int, int], dict[int, int]] | None = None

    def round(self, wait_s: float) -> Round:
        plan = self.plan
        began = time.monotonic()
        try:  # a broker away or a group coordinator moving: the round waits; what was read is kept
            if self._held is None:
                frontier = self._frontier()
                for msgs in self._read(decisions_topic(plan.group)).values():
                    for m in msgs:
                        d = decode_decision(m.value()) if m.value() is not None else None
                        mine = as_decision(d) if d is not None and d.topic == plan.topic else None
                        if d is not None and mine is not None:
                            self._decided.setdefault(d.partition, []).append(mine)
                for p, msgs in self._read(repartition_topic(plan.group)).items():
                    self._taken.setdefault(p, []).extend((m.offset(), as_taken(origin, value)) for m in msgs
                                                         for origin, value in unpack(m.value(), m.headers() or []))
                self._held = (frontier, self._output_ends())
            read = time.monotonic()
            frontier, ends = self._held
            if not self._stored_up_to(ends, wait_s):
                # the next round waits for the same ends: a store that lags by more than a round still gets there
                return Round(waiting="the store has not written the aggregator's latest documents yet")
            self._held = None
        except (KafkaException, TimeoutError) as exc:
            return Round(waiting=f"Kafka: {_one_line(exc)}")
        stored = time.monotonic()
        try:
            # a window the walk finished is compared once the aggregator closed it too (the flush that closes a
            # window publishes the rest of it: item rows go out less often while it is open), and searchable
            closed = partition_watermarks(self._es, plan.index_prefix)
            if any(closed.get(p, NEVER) > (self.windows[p].compared_to or NEVER) for p in self.parts):
                refresh_windows(self._es, plan.index_prefix)
        except (ApiError, TransportError) as exc:  # nothing walked yet: the next round goes on from here
            return Round(waiting=f"Elasticsearch: {_one_line(exc)}")
        for p in self.parts:
            self.windows[p].ceiling = closed.get(p, NEVER)
        decided, taken, self._decided, self._taken = self._decided, self._taken, {}, {}
        markers = sent_markers(item for items in taken.values() for item in items)
        rows = self.inputs.read(frontier)
        before = (self.diff.checked, self.diff.differences)
        walked = 0
        for p in self.parts:
            walk = self.walks[p]
            walk.extend(decided.get(p, []), markers.get(p, []))
            mine = rows.get(p, [])
            walk.feed(mine, taken.get(p, []))
            walk.read_to(frontier[p])  # every record before the frontier was read (the reader waits for it)
            walked += len(mine)
            # the corrections of windows no correction can reach any more
            final = walk.published - self.plan.rules.horizon_ms
            self.revised[p].add(walk.revisions(before=final), final)
        unreachable = None
        try:
            for p in self.parts:
                self.windows[p].flush(self.walks[p].published)
                VERIFY_REVISIONS_CHECKED.inc(self.revised[p].flush())
        except (ApiError, TransportError) as exc:  # kept: the next round compares them
            unreachable = f"Elasticsearch: {_one_line(exc)}"
        checked, differences = self.diff.checked - before[0], self.diff.differences - before[1]
        _LOG.debug("round: read %.2fs, store wait %.2fs, walk and compare %.2fs (%d records, %d documents)",
                   read - began, stored - read, time.monotonic() - stored, walked, checked)
        VERIFY_WINDOWS_CHECKED.inc(checked)
        VERIFY_MISMATCHES.inc(differences)
        VERIFY_ROUNDS.inc()
        VERIFY_INPUT_RECORDS.set(sum(w.out.counts.read for w in self.walks.values()))
        self.checkpoint.save({p: w.compared_to for p, w in self.windows.items() if w.compared_to is not None})
        VERIFY_CHECKED_UP_TO.set(self.checked_up_to())
        return Round(walked, checked, differences, unreachable)

    def checked_up_to(self) -> int:
        """The event time up to which every partition's windows are compared (0: none yet)."""
        ends = [w.compared_to for w in self.windows.values()]
        return 0 if not ends or any(e is None for e in ends) else min(e for e in ends if e is not None)

    def _frontier(self) -> dict[int, int]:
        tps = [TopicPartition(self.plan.topic, p) for p in self.parts]
        committed = self._committed.committed(tps, timeout=10)
        return {tp.partition: max(tp.offset, self.plan.span[tp.partition][0]) for tp in committed}

    def _partitions(self, topic: str) -> list[int]:
        """The partitions of one of the group's topics (none until the aggregator made it)."""
        if topic not in self._counts:
            info = self._admin.list_topics(topic, timeout=10).topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                return []
            self._counts[topic] = len(info.partitions)
        return list(range(self._counts[topic]))

    def _read(self, topic: str) -> dict[int, list[Message]]:
        """The records of one of the group's topics committed since the last round."""
        parts = self._partitions(topic)
        if not parts:
            return {}
        tail = self._tails.get(topic)
        if tail is None:
            tail = self._tails[topic] = Tail(self.plan.bootstrap, topic, dict.fromkeys(parts, 0))
        return tail.read(end_offsets(self._admin, topic, parts, committed=True))

    def _output_ends(self) -> dict[int, int]:
        name = aggregates_topic(self.plan.group)
        parts = self._partitions(name)
        return end_offsets(self._admin, name, parts) if parts else {}

    def _stored_up_to(self, ends: dict[int, int], wait_s: float) -> bool:
        """True once the store group has committed the aggregates topic up to ``ends`` (its last record may be a
        transaction marker, which no consumer sees)."""
        name = aggregates_topic(self.plan.group)
        deadline = time.monotonic() + wait_s
        while True:
            tps = [TopicPartition(name, p) for p in ends]
            done = {tp.partition: tp.offset for tp in self._stored.committed(tps, timeout=10)} if tps else {}
            if all(end <= 0 or done.get(p, -1) >= end - 1 for p, end in ends.items()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        for tail in [self.inputs, *self._tails.values()]:
            tail.close()
        self._committed.close()
        self._stored.close()


def _one_line(exc: Exception) -> str:
    text = str(exc.args[0].str() if isinstance(exc, KafkaException) and exc.args else exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


def follow(plan: Plan, state_path: Path, interval_s: float, stop: threading.Event,
           on_round: Callable[[Round, int], None] = lambda r, up_to: None) -> DocDiff:
    """Verify round after round, every ``interval_s``, until ``stop`` is set; returns what was compared."""

    first: list[str] = []

    def report(line: str) -> None:
        _LOG.error("verify mismatch: %s", line)
        first[:] = first or [line]

    es, beat = plan.es.client(), Heartbeat(plan.bootstrap, f"verify:{plan.group}")
    ensure_indices(es, plan.index_prefix)  # the heartbeat's, if the store has not made it yet
    follower = Follower(plan, Checkpoint(state_path, plan), report)
    warned = -3600.0
    try:
        while not stop.is_set():
            began = time.monotonic()
            try:
                result = follower.round(wait_s=max(interval_s, 1.0))
            except Exception as exc:
                # a broker or node away for long mid-round: what was read is not all walked, so walk again from the
                # start (only windows past the checkpoint are compared, so nothing is reported twice)
                _LOG.warning("verify: %s; starting over from the checkpoint in %.0fs", _one_line(exc), RETRY_S)
                follower.close()
                if stop.wait(RETRY_S):
                    break
                follower = Follower(plan, Checkpoint(state_path, plan), report)
                continue
            on_round(result, follower.checked_up_to())
            if beat.due() or result.differences:
                d = follower.diff
                problem = beat.publish(es, plan.index_prefix, checked_up_to=follower.checked_up_to() or None,
                                       checked=d.checked, differences=d.differences,
                                       first_difference=first[0] if first else None)
                if problem and time.monotonic() - warned > 60:  # Elasticsearch away: said once a minute
                    warned = time.monotonic()
                    _LOG.warning("%s", problem)
            stop.wait(max(0.0, interval_s - (time.monotonic() - began)))
    finally:
        follower.close()
        beat.close()
    return follower.diff


__all__ = ["Checkpoint", "Follower", "Round", "Tail", "follow"]
