"""`pulse verify` streamed: each input partition walked once, its windows diffed against Elasticsearch a batch at
a time as the owner watermark finishes them, its users and items at the end; partitions walked side by side,
one process each.

What is held is the live state (open windows, users, items, the ids within the duplicate horizon) and one
batch of finished windows, never the input. A batch is compared with the stored documents of the same partition
whose end falls in the same range, so a stored document the recompute never made is found as well.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elasticsearch.serializer import OrjsonSerializer

from pulse.connect.elasticsearch import EsConnection
from pulse.verify import revisions
from pulse.verify.diff import DocDiff, compare, compare_totals
from pulse.verify.lookahead import Lookahead
from pulse.verify.native import NativeWalk
from pulse.verify.order import NEVER, Counts, Decision, Taken
from pulse.verify.ranges import Scope
from pulse.verify.walk import Doc, Rules, Walked, check_flows, sent_markers

BATCH = 5_000  # finished window documents compared at once


@dataclass(frozen=True)
class Plan:
    """What to verify, against which documents."""
    bootstrap: str
    es: EsConnection
    topic: str
    group: str
    index_prefix: str
    window_sizes: tuple[int, ...]
    rules: Rules
    span: dict[int, tuple[int, int]]  # per input partition: (first offset, end offset)
    session_timeout_ms: int = 30 * 60_000
    scope: Scope = field(default_factory=Scope)  # a range: which windows, and what its walk cannot know


@dataclass
class Report:
    counts: Counts
    diff: DocDiff
    seconds: float
    partitions: int
    scope: Scope = field(default_factory=Scope)
    reached: int | None = None  # with --to: every partition's windows ending up to here were compared

    @property
    def ok(self) -> bool:
        return self.diff.ok

    def as_json(self) -> dict[str, Any]:
        c, d = self.counts, self.diff
        return {"ok": self.ok, "input_records": c.read, "partitions": self.partitions,
                "seconds": round(self.seconds, 3),
                "records": {"accepted": c.accepted, "corrected": c.corrected, "dead_lettered": c.dead_lettered,
                            "late": c.late, "duplicates": c.duplicates, "forwarded": c.forwarded},
                "documents": {"checked": d.checked, "matched": d.matched, "missing": d.missing, "extra": d.extra,
                              "mismatched": d.mismatched, "by_kind": dict(sorted(d.by_kind.items()))},
                "problems": d.problems, "examples": d.examples,
                "range": {"windows_from": self.scope.windows_from, "windows_to": self.scope.windows_to,
                          "compared_up_to": self.reached, "users_items_counters": self.scope.whole}}


@dataclass
class _Checked:
    walked: Walked
    diff: DocDiff = field(default_factory=DocDiff)
    reached: int | None = None  # with --to: windows ending up to here were compared


_progress: Any = None  # in a worker: the queue progress goes to


def _init_worker(progress: Any) -> None:
    global _progress
    _progress = progress
    # a worker lives for one run and makes no cycles worth collecting; the collector would walk every message
    # and document it holds, again and again
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers


class WindowDiff:
    """Finished window documents of one partition, diffed a batch at a time against the stored ones whose end
    falls in the same range."""

    def __init__(self, es: Any, partition: int, prefix: str, diff: DocDiff, compared_to: int | None = None,
                 scope: Scope | None = None) -> None:
        self.es, self.partition, self.prefix, self.diff = es, partition, prefix, diff
        self.scope = scope or Scope()
        self.batch: dict[str, dict[str, Any]] = {}
        self.compared_to = compared_to  # windows ending at or before it are compared (None: none yet)
        self.ceiling: int | None = None  # a follower's: windows ending after it are not published in full yet
        if self.scope.windows_from is not None and (compared_to is None or compared_to < self.scope.windows_from):
            self.compared_to = self.scope.windows_from  # no window of the range ends before it starts

    def finished(self, watermark: int, docs: list[Doc]) -> None:
        if self.compared_to is not None and watermark <= self.compared_to:
            return  # compared before (a follower's restart), or before the range
        self.batch.update(d for d in docs if (self.compared_to is None or d[1]["end"] > self.compared_to)
                          and self.scope.wants(d[1]))
        if len(self.batch) >= BATCH:
            self.flush(watermark)

    def flush(self, upto: int | None) -> None:
        """Compare the batch, which holds every expected window ending after the last flush and up to ``upto``
        (None: every one left)."""
        from pulse.store.readback import windows_ending

        if upto is not None and self.ceiling is not None:
            upto = min(upto, self.ceiling)
        if self.scope.windows_to is not None:  # a walk's clock can jump past the range's end in one step
            upto = self.scope.windows_to if upto is None else min(upto, self.scope.windows_to)
        if upto is not None and (upto <= NEVER or (self.compared_to is not None and upto <= self.compared_to)):
            return  # nothing is final yet, or nothing since the last flush
        stored = windows_ending(self.es, self.partition, self.compared_to, upto, self.prefix, self.scope.windows_from)
        due = {i: d for i, d in self.batch.items() if upto is None or d["end"] <= upto}
        compare(due, stored, self.diff)
        self.batch = {i: d for i, d in self.batch.items() if i not in due}  # a follower's, not published yet
        self.compared_to = upto


class RevisionDiff:
    """A follower's corrections of one partition, compared per window once no correction can reach it any more
    (the walk's owner watermark is a correction horizon past its end), against the stored revisions of the
    windows ending in the same range. A restarted follower compares only windows ending after its checkpoint: the
    corrections of earlier ones may have come before the input its range walks again."""

    def __init__(self, es: Any, partition: int, prefix: str, diff: DocDiff, compared_to: int | None = None,
                 scope: Scope | None = None) -> None:
        self.es, self.partition, self.prefix, self.diff = es, partition, prefix, diff
        self.scope = scope or Scope()
        self.compared_to = compared_to
        self.pending: list[Doc] = []  # handed out by the walk, not compared yet (Elasticsearch was away)
        self.upto: int | None = None
        self.due = False  # something was handed out since the last comparison

    def add(self, docs: list[Doc], upto: int | None) -> None:
        """The walk's summed corrections of the windows ending at or before ``upto`` (None: of every window, the
        walk has ended)."""
        self.pending.extend(docs)
        self.upto, self.due = upto, True

    def flush(self) -> int:
        """Compare what is pending; the number of windows' corrections compared."""
        from pulse.store.readback import windows_ending

        upto, after = self.upto, self.compared_to
        if not self.due or (upto is not None and (upto <= NEVER or (after is not None and upto <= after))):
            self.pending = []
            return 0
        mine = revisions.expected(d for d in self.pending if (after is None or d[1]["end"] > after)
                                  and self.scope.wants(d[1]))
        stored = windows_ending(self.es, self.partition, after, upto, self.prefix, self.scope.windows_from,
                                revisions=True)
        compare(mine, revisions.stored((i, d) for i, d in stored.items() if self.scope.wants(d)), self.diff)
        self.pending, self.compared_to, self.due = [], upto, False
        return len(mine)


def check_partition(plan: Plan, p: int, decisions: list[Decision], markers: list[tuple[int, int]],
                    lookahead: Lookahead | None) -> _Checked:
    """Walk input partition ``p`` and diff its documents against Elasticsearch as they finish."""
    from pulse.store.readback import entities
    from pulse.verify.source import input_batches, input_end, repartitioned

    es, scope = plan.es.client(serializer=OrjsonSerializer()), plan.scope  # read-only: its fastest parser
    diff = DocDiff()
    windows = WindowDiff(es, p, plan.index_prefix, diff, scope=scope)
    walk = NativeWalk(p, plan.rules, plan.window_sizes, plan.session_timeout_ms, scope.unseen_before,
                      windows.finished, decisions, markers, lookahead)
    start, end = plan.span.get(p, (0, 0))
    taken: Iterator[Taken] | None = repartitioned(plan.bootstrap, plan.group, p)
    to = scope.windows_to  # with it, read on past the range only until every window of it is final
    # with --to: where the reading below gets to at least, should the input run out (looked up before it starts)
    ends_at = input_end(plan.bootstrap, plan.topic, p) if to is not None else None
    for batch in _reported(p, input_batches(plan.bootstrap, plan.topic, p, start, None if to is not None else end)):
        walk.feed(batch, taken, to)
        taken = None
        if to is not None and walk.published >= to:
            break
    if taken is not None:  # the input had no records
        walk.feed([], taken, to)
    if to is not None:
        if walk.published < to and ends_at is not None:  # the input ran out: decisions past its last record apply
            walk.read_to(ends_at)
        reached = min(walk.published, to)
        windows.flush(reached)
        return _Checked(walk.out, diff, reached)
    walked = walk.close()
    rest, owned = walk.finish()
    windows.batch.update(d for d in rest if scope.wants(d[1]))
    windows.flush(None)
    # corrections, summed per window document over its revisions: they may come until the end of the input
    corrected = RevisionDiff(es, p, plan.index_prefix, diff, scope=scope)
    corrected.add(walk.revisions(), None)
    corrected.flush()
    if scope.whole:
        compare(dict(owned), entities(es, p, plan.index_prefix), diff)
    return _Checked(walked, diff)


def _reported(p: int, batches: Iterator[list[Any]]) -> Iterator[list[Any]]:
    for batch in batches:
        yield batch
        if _progress is not None:
            _progress.put((p, len(batch)))


def run(plan: Plan, decisions: dict[int, list[Decision]], workers: int,
        on_progress: Callable[[int], None] = lambda n: None) -> Report:
    """Verify every partition of ``plan.span`` with ``workers`` processes; ``on_progress`` gets records read."""
    from pulse.store.readback import partition_documents, partitions_holding
    from pulse.verify.source import repartition_index

    began = time.monotonic()
    marks, ahead = repartition_index(plan.bootstrap, plan.group)
    markers = sent_markers(marks)
    parts = sorted(plan.span)
    ctx = multiprocessing.get_context("spawn")  # a fork would copy the parent's Kafka clients' threads
    progress = ctx.Queue()
    results: dict[int, _Checked] = {}
    pool = ctx.Pool(max(1, min(workers, len(parts) or 1)), initializer=_init_worker, initargs=(progress,))
    try:
        pending = {p: pool.apply_async(check_partition, (plan, p, decisions.get(p, []), markers.get(p, []),
                                                    ahead.get(p)))
                   for p in parts}
        while pending:
            with contextlib.suppress(queue.Empty):
                on_progress(progress.get(timeout=0.2)[1])
            for p in [p for p, r in pending.items() if r.ready()]:
                results[p] = pending.pop(p).get()  # a worker's error is raised here
        pool.close()
    finally:
        pool.terminate()  # on an error or Ctrl-C: the other workers stop too
    while True:
        try:
            on_progress(progress.get_nowait()[1])
        except queue.Empty:
            break
    counts, diff = Counts(), DocDiff()
    for p in parts:
        counts.add(results[p].walked.counts)
        diff.add(results[p].diff)
    whole = not any(plan.rules.starts.values())
    diff.problems[:0] = counts.problems + check_flows((r.walked for r in results.values()), corrections=whole,
                                                      early=plan.scope.windows_to is not None)
    es = plan.es.client()
    if plan.scope.whole:
        compare_totals(counts, partition_documents(es, plan.index_prefix), diff)
        strangers = sorted(partitions_holding(es, plan.index_prefix) - set(parts))
        if strangers:
            diff.problems.append(f"documents of partitions the input does not have: {strangers[:10]}")
    reached = [r.reached for r in results.values() if r.reached is not None]
    return Report(counts, diff, time.monotonic() - began, len(parts), plan.scope, min(reached, default=None))
