"""Input not keyed by user id, without Kafka: each partition forwards the records of users it does not own, the
owners take them at their flushes, and the result equals the reference recompute given the same decisions
(where each owner took its forwarded records). tests/realworld/test_keys.py runs the same through the broker.
"""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate._core import RECORD_TS_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER
from pulse.aggregate.state import StateConfig, new_partition, route_batch
from pulse.generate.chaos import ChaosConfig
from pulse.verify.diff import diff_documents
from pulse.verify.reference import Take, recompute
from tests.aggregate.test_state_vs_reference import SIZES, make_rows

PARTITIONS = 4


class _Forwarded:
    """A record of the repartition topic, with the accessors the router reads."""

    def __init__(self, partition: int, offset: int, value: bytes, source: tuple[int, int], record_ts: int) -> None:
        self._p, self._o, self._v = partition, offset, value
        self._h = [(SOURCE_PARTITION_HEADER, str(source[0]).encode()), (SOURCE_OFFSET_HEADER, str(source[1]).encode()),
                   (RECORD_TS_HEADER, str(record_ts).encode())]

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes:
        return b"user"

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)  # when it was forwarded: the router must use the header instead

    def headers(self) -> list[tuple[str, bytes]]:
        return self._h


class _Input(_Forwarded):
    def __init__(self, partition: int, offset: int, value: bytes, ts: int) -> None:
        super().__init__(partition, offset, value, (partition, offset), ts)
        self._ts = ts

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(50, 3_000), late=st.floats(0, 0.05), dup=st.floats(0, 0.1),
       bad=st.floats(0, 0.05), take_every=st.integers(1, 3))
def test_forwarded_records_count_exactly_once_where_their_user_lives(seed: int, batch: int, late: float, dup: float,
                                                                    bad: float, take_every: int) -> None:
    """Round-robin input (what null keys give): duplicates of one event land in different partitions and are
    still caught, every user has one document and one partition, and the numbers equal the reference's."""
    rows = make_rows(4_000, seed, ChaosConfig(late_fraction=late, duplicate_fraction=dup, invalid_fraction=bad,
                                              disorder_fraction=0.05), partitions=PARTITIONS)
    rng = random.Random(seed)
    rows = [(rng.randrange(PARTITIONS), i, value, ts) for i, (_, _, value, ts) in enumerate(rows)]
    cfg = StateConfig(window_sizes=SIZES, grace_ms=30_000, dedup_horizon_ms=30_000)
    states = {p: new_partition(p, cfg, PARTITIONS) for p in range(PARTITIONS)}
    topic: dict[int, list[_Forwarded]] = {p: [] for p in range(PARTITIONS)}  # the repartition topic
    taken = dict.fromkeys(range(PARTITIONS), 0)
    decisions: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    docs: dict = {}

    def flush(n: int, last: bool = False) -> None:
        if n % take_every == 0 or last:  # the owners take what was forwarded so far (as fetched)
            fetched = [m for p in range(PARTITIONS) for m in topic[p][taken[p]:]]
            rng.shuffle(fetched)  # partitions interleave in a fetch; each keeps its order
            fetched.sort(key=lambda m: (m.partition(), m.offset()))
            route_batch(states, fetched, forwarded=True)
            for p, st_ in states.items():
                if st_.repartition_offset != taken[p]:
                    taken[p] = st_.repartition_offset
                    decisions[p].append(Take(st_.next_offset, st_.repartition_offset))
        for p, st_ in states.items():
            flushed = st_.flush(True, True, 0)
            if flushed is None:
                continue
            docs.update((d.id, orjson.loads(d.value)) for d in flushed.documents)
            for f in flushed.forward:
                assert f.owner != p and f.user
                topic[f.owner].append(_Forwarded(f.owner, len(topic[f.owner]), f.value, (p, f.offset), f.record_ts))
            st_.committed(True, True)

    for n, i in enumerate(range(0, len(rows), batch)):
        route_batch(states, [_Input(*row) for row in rows[i:i + batch]])
        flush(n)
    flush(-1, last=True)  # forwarded records of the last input
    flush(-1, last=True)

    forwarded = {p: [(m.offset(), *_source(m)) for m in msgs] for p, msgs in topic.items()}
    expected = recompute(rows, SIZES, 30_000, 30_000, decisions=decisions, forwarded=forwarded, partitions=PARTITIONS)
    assert expected.forwarded > len(rows) // 2  # most records were not where their user lives
    diff = diff_documents(expected, docs)
    assert diff.ok, diff.summary()
    users = [d for d in docs.values() if d["kind"] == "user"]
    assert len(users) == len({d["user_id"] for d in users})


def _source(m: _Forwarded) -> tuple[int, int]:
    h = dict(m.headers())
    return int(h[SOURCE_PARTITION_HEADER]), int(h[SOURCE_OFFSET_HEADER])


def test_a_backlog_read_ahead_of_its_forwarded_records_makes_nothing_late() -> None:
    """After a restart a partition reads its own backlog (a minute and more of event time) before the records
    other partitions forward from theirs exist: its clock waits for the streams it knows, so none comes late."""
    rows = make_rows(6_000, 7, ChaosConfig(), partitions=PARTITIONS)  # in order, nothing late
    rng = random.Random(7)
    rows = [(rng.randrange(PARTITIONS), i, value, ts) for i, (_, _, value, ts) in enumerate(rows)]
    assert rows[-1][3] - rows[1_000][3] > 60_000
    cfg = StateConfig(window_sizes=SIZES, grace_ms=5_000, dedup_horizon_ms=5_000)
    states = {p: new_partition(p, cfg, PARTITIONS) for p in range(PARTITIONS)}
    topic: dict[int, list[_Forwarded]] = {p: [] for p in range(PARTITIONS)}
    decisions: dict[int, list] = {p: [] for p in range(PARTITIONS)}

    def step(batch: list) -> None:
        """Read ``batch``, commit what it forwards, and take what was forwarded."""
        route_batch(states, [_Input(*row) for row in batch])
        for p, st_ in states.items():
            flushed = st_.flush(True, True, 0)
            for f in flushed.forward if flushed else []:
                topic[f.owner].append(_Forwarded(f.owner, len(topic[f.owner]), f.value, (p, f.offset), f.record_ts))
            st_.committed(True, True)
        route_batch(states, [m for p in range(PARTITIONS) for m in topic[p][states[p].repartition_offset:]],
                    forwarded=True)
        for p, st_ in states.items():
            decisions[p].append(Take(st_.next_offset, st_.repartition_offset))

    for i in range(0, 1_000, 100):  # live: forwarded records follow within a flush
        step(rows[i:i + 100])
    step(rows[1_000:])  # then the backlog in one go
    assert sum(st_.counters.late for st_ in states.values()) == 0  # late
    assert sum(st_.counters.accepted for st_ in states.values()) == len(rows)
    forwarded = {p: [(m.offset(), *_source(m)) for m in msgs] for p, msgs in topic.items()}
    expected = recompute(rows, SIZES, 5_000, 5_000, decisions=decisions, forwarded=forwarded, partitions=PARTITIONS)
    assert (expected.accepted, expected.late) == (len(rows), 0)
