"""Input not keyed by user id, without Kafka: each partition judges its records where it reads them, forwards the
on-time records of users it does not own with its watermark, and the owners take them at their flushes. Whatever
the batching, the order partitions read and flush in, when owners take what was forwarded, and where a partition
restarts from its changelog, the aggregates are the same, and equal the reference recompute given the recorded
decisions. tests/realworld/test_arrival_order.py runs the same through the broker.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate.partition import EVERY_USER, Details, StateConfig, new_partition, remember_recent, route_batch
from pulse.aggregate.repartition import batch_headers, unpack
from pulse.generate.chaos import ChaosConfig
from pulse.verify import revisions
from pulse.verify.diff import diff_documents
from pulse.verify.reference import Forward, Marker, Stall, Take, recompute
from tests.aggregate.test_partition_vs_reference import SIZES, make_rows

PARTITIONS = 4
CFG = StateConfig(window_sizes=SIZES, grace_ms=30_000, correct_within_ms=30_000)
POSITIONAL = {"version", "repartition_offset", "next_offset", "flushed_at", "final", "watermark"}
"""Document fields that say where a run is, not what it counted."""


class _Message:
    """A consumed record, with the accessors the router reads."""

    def __init__(self, partition: int, offset: int, value: bytes | None, headers: list[tuple[str, bytes]],
                 ts: int = 0) -> None:
        self._p, self._o, self._v, self._h, self._ts = partition, offset, value, headers, ts

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes:
        return b"user"

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)  # a forwarded record's is when it was forwarded: the router must use the header

    def headers(self) -> list[tuple[str, bytes]]:
        return self._h


class Cluster:
    """Partitions, their changelogs and the repartition topic, committed at every flush, as the engine would."""

    def __init__(self, rows: list[tuple[int, int, bytes, int]], cfg: StateConfig = CFG) -> None:
        self.cfg = cfg
        self.input = {p: [r for r in rows if r[0] == p] for p in range(PARTITIONS)}
        self.states = {p: new_partition(p, cfg, PARTITIONS) for p in range(PARTITIONS)}
        self.topic: dict[int, list[_Message]] = {p: [] for p in range(PARTITIONS)}  # the repartition topic
        self.logs: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in range(PARTITIONS)}
        self.late: dict[int, set[tuple[int, int]]] = {p: set() for p in range(PARTITIONS)}
        self.decisions: dict[int, list[Any]] = {p: [] for p in range(PARTITIONS)}
        self.pending: dict[int, list[Any]] = {p: [] for p in range(PARTITIONS)}  # decisions of the next flush
        self.docs: dict[str, dict[str, Any]] = {}

    def read(self, p: int, n: int) -> None:
        st_ = self.states[p]
        batch = [r for r in self.input[p] if r[1] >= st_.next_offset][:n]
        route_batch(self.states, [_Message(pp, o, v, [], ts) for pp, o, v, ts in batch])

    def take(self, p: int, n: int) -> None:
        st_ = self.states[p]
        before = st_.repartition_offset
        route_batch(self.states, self.topic[p][before:before + n], forwarded=True)
        if st_.repartition_offset != before:
            self.pending[p].append(Take(st_.next_offset, st_.repartition_offset))

    def flush(self, p: int) -> None:
        st_ = self.states[p]
        flushed = st_.flush(Details.ALL, EVERY_USER, 0)
        if flushed is None:
            return
        self.docs.update((d.id, orjson.loads(d.value)) for d in flushed.documents)
        for b in flushed.forward:
            assert b.owner != p
            q = self.topic[b.owner]
            q.append(_Message(b.owner, len(q), b.value, batch_headers(p, b.offset, b.watermark, b.idle)))
        self.late[p].update((s.source_partition, s.source_offset) for s in flushed.late)
        self.logs[p].extend((r.key, r.value) for r in flushed.records)
        self.decisions[p] += self.pending[p]
        self.pending[p] = []
        st_.handed_over()

    def restart(self, p: int) -> None:
        """A crash: whatever was not flushed is lost; the state comes back from the changelog, with the ids of
        recent on-time records re-read for duplicate detection (the late ones left out), as restore does."""
        st_ = self.states[p] = new_partition(p, self.cfg, PARTITIONS)
        st_.restore([(offset, k, v) for offset, (k, v) in enumerate(self.logs[p])])
        self.pending[p] = []
        horizon = st_.watermark - self.cfg.correct_within_ms
        own = [(v, ts) for _, o, v, ts in self.input[p] if o < st_.next_offset and (p, o) not in self.late[p]]
        forwarded = [(value, origin.record_ts) for m in self.topic[p][:st_.repartition_offset]
                     for origin, value in unpack(m.value(), m.headers())
                     if value is not None and (origin.partition, origin.offset) not in self.late[p]]
        remember_recent(st_, own + forwarded, horizon)

    def stall(self, p: int, source: int) -> None:
        """``p`` gave up waiting for ``source``'s watermark (the engine's stall rule, by the wall clock)."""
        if self.states[p].stalled(source):
            self.pending[p].append(Stall(self.states[p].next_offset, source))

    def drain(self) -> None:
        """Everything read, flushed and taken (twice over: taking forwards nothing, but flushing sends markers)."""
        for _ in range(3):
            for p in range(PARTITIONS):
                self.read(p, 10**9)
                self.flush(p)
            for p in range(PARTITIONS):
                self.take(p, 10**9)
                self.flush(p)

    def forwarded(self) -> dict[int, list[tuple[int, Forward | Marker]]]:
        out: dict[int, list[tuple[int, Forward | Marker]]] = {}
        for p, msgs in self.topic.items():
            out[p] = []
            for m in msgs:
                for origin, value in unpack(m.value(), m.headers()):
                    item: Forward | Marker = \
                        Forward(origin.partition, origin.offset, correction=origin.correction) if value is not None \
                        else Marker(origin.partition, origin.offset, origin.watermark or 0, origin.idle)
                    out[p].append((m.offset(), item))
        return out

    def counted(self) -> dict[str, dict[str, Any]]:
        """The documents without the fields that say where the run is (and its revisions summed: which flush
        counted which correction is timing), nor the funnels of revisions (:func:`revisions.arrival_free`)."""
        docs = revisions.arrival_free(revisions.summed(self.docs.items()))
        return {i: {k: v for k, v in d.items() if k not in POSITIONAL} for i, d in docs.items()}

    def totals(self) -> tuple[int, int, int, int, int]:
        c = [st_.counters for st_ in self.states.values()]
        return (sum(x.accepted for x in c), sum(x.late for x in c), sum(x.duplicates for x in c),
                sum(x.dead_lettered for x in c), sum(x.corrected for x in c))


def _rows(seed: int, late: float, dup: float, bad: float, n: int = 3_000) -> list[tuple[int, int, bytes, int]]:
    """Generated traffic on random partitions (null keys), in time order apart from the chaos."""
    rows = make_rows(n, seed, ChaosConfig(late_fraction=late, duplicate_fraction=dup, invalid_fraction=bad,
                                          disorder_fraction=0.05), partitions=PARTITIONS)
    rng = random.Random(seed)
    offsets = [0] * PARTITIONS
    out = []
    for _, _, value, ts in rows:
        p = rng.randrange(PARTITIONS)
        out.append((p, offsets[p], value, ts))
        offsets[p] += 1
    return out


def in_order(rows: list[tuple[int, int, bytes, int]]) -> Cluster:
    """The plainest read: record after record in production order, each flush followed by every take."""
    c = Cluster(rows)
    for p, _, _, _ in rows:
        c.read(p, 1)
        c.flush(p)
        for q in range(PARTITIONS):
            c.take(q, 10**9)
    c.drain()
    return c


def played(rows: list[tuple[int, int, bytes, int]], ops: list[tuple[str, int, int]]) -> Cluster:
    """The cluster after ``ops`` (read n records of a partition, flush it, take n of its repartition records,
    restart it), then drained."""
    c = Cluster(rows)
    for op, p, n in ops:
        if op == "r":
            c.read(p, n)
        elif op == "f":
            c.flush(p)
        elif op == "t":
            c.take(p, n)
        else:
            c.restart(p)
    c.drain()
    return c


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), late=st.floats(0, 0.05), dup=st.floats(0, 0.1), bad=st.floats(0, 0.05),
       ops=st.lists(st.tuples(st.sampled_from("rrrrfftx"), st.integers(0, PARTITIONS - 1), st.integers(1, 800)),
                    min_size=5, max_size=60))
def test_any_arrival_order_counts_the_same(seed: int, late: float, dup: float, bad: float,
                                           ops: list[tuple[str, int, int]]) -> None:
    """Random partitions, batches, flush and take interleavings and restarts (a backlog read partition after
    partition is one of them) count exactly what one in-order pass counts, and what the reference counts."""
    rows = _rows(seed, late, dup, bad)
    c = played(rows, ops)
    plain = in_order(rows)
    assert c.totals() == plain.totals()
    mine, theirs = c.counted(), plain.counted()
    differ = sorted(i for i in mine.keys() | theirs.keys() if mine.get(i) != theirs.get(i))
    assert not differ, [(i, mine.get(i), theirs.get(i)) for i in differ[:3]]
    expected = recompute(rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, decisions=c.decisions,
                         forwarded=c.forwarded(), partitions=PARTITIONS)
    assert expected.forwarded > len(rows) // 2  # most records were not where their user lives
    diff = diff_documents(expected, c.docs)
    assert diff.ok, diff.summary()


def test_a_backlog_read_partition_after_partition_makes_nothing_late() -> None:
    """After a restart a consumer reads its backlog partition after partition, a minute and more of event time
    each, long before the records the other partitions forward exist: nothing is late, as live."""
    rows = _rows(7, 0.0, 0.0, 0.0, n=6_000)  # in order, nothing late
    assert rows[-1][3] - rows[0][3] > 60_000
    c = Cluster(rows)
    for p in range(PARTITIONS):
        c.read(p, 10**9)
        c.flush(p)
    c.drain()
    assert c.totals() == (len(rows), 0, 0, 0, 0)
    assert c.counted() == in_order(rows).counted()


def test_a_partition_that_never_forwarded_holds_its_owners_windows_open() -> None:
    """An owner's windows close only once every source's watermark passed them: a source that has read nothing
    yet could still forward records of their time."""
    rows = _rows(3, 0.0, 0.0, 0.0, n=2_000)
    c = Cluster(rows)
    for p in range(PARTITIONS - 1):  # the last partition is not read at all
        c.read(p, 10**9)
        c.flush(p)
        c.take(p, 10**9)
    owners = [c.states[p] for p in range(PARTITIONS - 1)]
    assert all(st_.watermark < rows[0][3] for st_ in owners)
    assert not any(d.get("final") for d in c.docs.values())
    c.drain()
    assert any(d.get("final") for d in c.docs.values())



def test_a_stalled_source_holds_windows_back_by_the_forward_wait_and_its_late_records_are_replayed() -> None:
    """A source that sends no watermark (its aggregator died) holds its owners' windows open until they record it
    as stalled; then by at most the forward wait (here it is far behind: not at all). Its records that arrive
    after the owners moved on are late there, and the reference, replaying the decisions, counts the same."""
    cfg = StateConfig(window_sizes=SIZES, grace_ms=30_000, correct_within_ms=30_000, forward_wait_ms=20_000)
    rows = _rows(11, 0.0, 0.0, 0.0, n=6_000)
    c = Cluster(rows, cfg)
    owners = range(PARTITIONS - 1)
    for p in owners:  # the last partition is not read: its aggregator is gone
        c.read(p, 10**9)
        c.flush(p)
    for p in owners:
        c.take(p, 10**9)
        c.flush(p)
    held = [c.states[p].watermark for p in owners]
    for p in owners:
        c.stall(p, PARTITIONS - 1)
        c.flush(p)
    moved = [c.states[p].watermark for p in owners]
    assert all(m > h for m, h in zip(moved, held, strict=True))  # the windows it held back close now
    assert max(moved) <= max(c.states[p].source_watermark for p in owners)
    c.drain()  # its partition is read at last: its records of closed windows are corrections or too late
    accepted, late, _, _, corrected = c.totals()
    assert late > 0 and corrected > 0 and accepted + late + corrected == len(rows)
    expected = recompute(rows, SIZES, cfg.grace_ms, cfg.correct_within_ms, decisions=c.decisions,
                         forwarded=c.forwarded(), partitions=PARTITIONS, forward_wait_ms=cfg.forward_wait_ms)
    assert (expected.accepted, expected.late, expected.corrected) == (accepted, late, corrected)
    diff = diff_documents(expected, c.docs)
    assert diff.ok, diff.summary()
