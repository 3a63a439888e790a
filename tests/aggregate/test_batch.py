"""The batch router (``route_batch``: parse in parallel, route per partition on worker threads, off the GIL) makes
exactly the decisions of routing record by record.

The router's input is a consumed batch: a list of confluent-kafka messages. It reads a genuine
``confluent_kafka.Message`` in place (at the field offsets it probes once) and anything else through the
accessors; the comparison builds batches of either, without a broker (``_Msg`` carries the same accessors over a
plain record), and tests/aggregate/test_engine_kafka.py runs the router on consumed batches.
"""

from __future__ import annotations

import random

import orjson
import pytest
from confluent_kafka import KafkaError, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate._core import FlushOutput, process_batch
from pulse.aggregate.partition import (
    EVERY_USER,
    Details,
    Partition,
    StateConfig,
    flush_all,
    new_partition,
    route,
    route_batch,
    settle,
    verdict,
)
from pulse.errors import PulseError
from pulse.generate.chaos import ChaosConfig
from tests.aggregate.test_partition_vs_reference import SIZES, make_rows


class _Error:
    def fatal(self) -> bool:
        return False

    def str(self) -> str:
        return "partition EOF"


class _Msg:
    """A consumed record with the accessors of ``confluent_kafka.Message`` that the router reads."""

    def __init__(self, partition: int, offset: int, value: bytes | None, ts: int, error: _Error | None = None):
        self._p, self._o, self._v, self._ts, self._e = partition, offset, value, ts, error

    def error(self) -> _Error | None:
        return self._e

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes:
        return b"k%d-%d" % (self._p, self._o)

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


def plain(flushed: FlushOutput | None) -> dict[str, list[tuple]] | None:
    """A flush's output as plain values, to compare."""
    if flushed is None:
        return None
    return {"records": [(r.key, r.value) for r in flushed.records],
            "documents": [(d.id, d.kind, d.value) for d in flushed.documents],
            **{kind: [(s.source_partition, s.source_offset, s.key, s.value, s.reason, s.detail) for s in sides]
               for kind, sides in (("dead", flushed.dead), ("late", flushed.late))},
            "forward": [(b.owner, b.value, b.records, b.offset, b.watermark, b.idle) for b in flushed.forward]}


def _outputs(states: dict[int, Partition]) -> dict:
    """Everything a flush would write, per partition, plus the counters."""
    out = {}
    for p, st_ in sorted(states.items()):
        flushed = plain(st_.flush(Details.ALL, EVERY_USER, 0))
        out[p] = {"counters": st_.counters.as_list(), "next": st_.next_offset}
        if flushed is not None:
            out[p] |= {"docs": {i: orjson.loads(v) for i, _, v in flushed["documents"]},
                       "records": sorted(flushed["records"])} | {k: flushed[k] for k in ("dead", "late", "forward")}
    return out


def _message(p: int, offset: int, value: bytes | None, ts: int) -> Message:
    """The same record as ``_Msg(p, offset, value, ts)``, as the consumer hands it over."""
    return Message(topic="t", partition=p, offset=offset, value=value, key=b"k%d-%d" % (p, offset), timestamp=(1, ts))


def _batches(rows: list, sizes: list[int], rng: random.Random, real: bool = False) -> list[list]:
    """Cut ``rows`` into consumed batches (of ``confluent_kafka.Message`` if ``real``); some re-deliver records
    already routed, some carry an error."""
    make = _message if real else _Msg
    msgs = [make(p, offset, None if rng.random() < 0.005 else value, ts) for p, offset, value, ts in rows]
    batches, i = [], 0
    for size in sizes:
        batch = msgs[i:i + size]
        if batches and rng.random() < 0.3:
            batch = batches[-1][-rng.randint(1, 50):] + batch  # after a seek: already inside the state
        if batch and rng.random() < 0.3:
            failed = (Message(topic="t", partition=0, offset=-1, error=KafkaError(KafkaError._PARTITION_EOF)) if real
                      else _Msg(0, -1, None, 0, _Error()))
            batch.insert(rng.randrange(len(batch)), failed)
        batches.append(batch)
        i += size
    batches.append(msgs[i:])
    return batches


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), bad=st.floats(0, 0.2), sizes=st.lists(st.integers(1, 4_000), max_size=4),
       wait=st.booleans(), real=st.booleans(), unkeyed=st.booleans())
def test_batches_route_exactly_as_single_records(seed: int, bad: float, sizes: list[int], wait: bool,
                                                 real: bool, unkeyed: bool) -> None:
    """Large batches (several threads), small ones (inline), late, duplicate, invalid and None values, records
    re-delivered after a seek and error messages in the batch, of confluent-kafka messages or look-alikes, keyed
    by user id or not (then most are forwarded): the same state, documents and side outputs, in the same order,
    as routing each record on its own (which reads them through their accessors)."""
    rows = make_rows(6_000, seed, ChaosConfig(late_fraction=0.03, duplicate_fraction=0.03, invalid_fraction=bad),
                     partitions=4)
    if unkeyed:
        rows = [(i % 4, i, value, ts) for i, (_, _, value, ts) in enumerate(rows)]  # round robin
    cfg = StateConfig(window_sizes=SIZES)
    batched = {p: new_partition(p, cfg, 4) for p in range(3)}  # partition 3 is not owned: its records are skipped
    single = {p: new_partition(p, cfg, 4) for p in range(3)}
    if seed % 2:
        rows = sorted(rows, key=lambda row: row[0])  # as a backlog is read: partition after partition
    rng = random.Random(seed)
    batches = _batches(rows, sizes, rng, real)
    for batch in batches:
        for msg in batch:
            st_ = single.get(msg.partition())
            if msg.error() is None and st_ is not None and msg.offset() >= st_.next_offset:
                route(st_, msg.offset(), msg.key(), msg.value(), msg.timestamp()[1])
    for batch in batches:
        route_batch(batched, batch, wait=wait)  # without wait, the next batch is read while this one is routed
        if rng.random() < 0.3:
            settle()  # what the engine does before it touches a partition
    settle()
    assert _outputs(batched) == _outputs(single)
    assert sum(st_.counters.dead_lettered for st_ in single.values()) > 0 or bad == 0  # the validator did get records


def test_partitions_refuse_to_be_used_while_a_batch_is_being_routed() -> None:
    """The routing thread owns the batch's partitions until ``settle``: reading or flushing one before that
    raises, rather than racing the thread."""
    rows = make_rows(3_000, 1, ChaosConfig(), partitions=1)
    part = new_partition(0, StateConfig(window_sizes=SIZES))
    route_batch({0: part}, [_Msg(p, o, v, ts) for p, o, v, ts in rows], wait=False)
    with pytest.raises(RuntimeError, match="settle"):
        part.flush(Details.ALL, EVERY_USER, 0)
    with pytest.raises(RuntimeError, match="settle"):
        _ = part.next_offset
    settle()
    assert part.next_offset == rows[-1][1] + 1
    assert part.counters.accepted > 0


def test_only_the_partitions_being_routed_refuse() -> None:
    """A partition that no batch in flight routes into stays usable: the engine publishes a partition read to its
    end while the next partitions are being routed."""
    rows = make_rows(3_000, 2, ChaosConfig(), partitions=2)
    cfg = StateConfig(window_sizes=SIZES)
    first, second = new_partition(0, cfg), new_partition(1, cfg)
    route_batch({0: first}, [_Msg(p, o, v, ts) for p, o, v, ts in rows if p == 0])
    route_batch({1: second}, [_Msg(p, o, v, ts) for p, o, v, ts in rows if p == 1], wait=False)
    assert second.busy and not first.busy
    assert first.flush(Details.ALL, EVERY_USER, 0) is not None  # while partition 1 is being routed
    with pytest.raises(RuntimeError, match="settle"):
        flush_all([first, second], Details.ALL, [EVERY_USER, EVERY_USER], 0)
    settle()
    assert not second.busy and second.next_offset == max(o for p, o, _v, _ts in rows if p == 1) + 1


def test_a_batch_after_a_failed_one_is_not_routed() -> None:
    """The next batch is parsed while the previous one is routed, and routed after it; if the previous one fails
    (here the validator raises), the next must not route either: its records would skip the failed batch's, and
    the state's position would move past records it never counted."""
    rows = make_rows(4_000, 3, ChaosConfig(invalid_fraction=0.05), partitions=1)
    part = new_partition(0, StateConfig(window_sizes=SIZES))
    msgs = [_Msg(p, o, v, ts) for p, o, v, ts in rows]

    def broken(_value: bytes | None, _ts: int) -> tuple:
        raise ValueError("validator broke")

    assert process_batch({0: part}, msgs[:2_000], 0, broken) == -1
    assert process_batch({0: part}, msgs[2_000:], 0, verdict) == -1  # parsed while the first is in flight
    with pytest.raises(ValueError, match="validator broke"):
        settle()  # both batches; the first error is raised
    assert part.next_offset == 0 and not any(part.counters.as_list())
    route_batch({0: part}, msgs)  # nothing is left in flight: the partition routes normally again
    assert part.next_offset == rows[-1][1] + 1


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), details=st.sampled_from([Details.CLOSING, Details.DUE, Details.ALL]),
       users=st.lists(st.sampled_from([0, 1, 50, EVERY_USER]), min_size=4, max_size=4))
def test_flushing_partitions_together_equals_flushing_each(seed: int, users: list[int], details: Details) -> None:
    """``flush_all`` renders partitions in parallel: the same output, per partition and in order, as
    ``Partition.flush`` on each (quiet partitions give None in their place)."""
    rows = make_rows(4_000, seed, ChaosConfig(late_fraction=0.03, invalid_fraction=0.03), partitions=3)
    cfg = StateConfig(window_sizes=SIZES)
    together = [new_partition(p, cfg) for p in range(4)]  # partition 3 gets no records
    each = [new_partition(p, cfg) for p in range(4)]
    for p, offset, value, ts in rows:
        route(together[p], offset, b"k", value, ts)
        route(each[p], offset, b"k", value, ts)
    for _ in range(2):  # the second flush finds little or nothing changed
        one_by_one = [plain(st_.flush(details, u, 7)) for st_, u in zip(each, users, strict=True)]
        assert [plain(f) for f in flush_all(together, details, users, 7)] == one_by_one
        for st_ in together + each:
            st_.handed_over()


@pytest.mark.parametrize("real", [True, False], ids=["confluent-kafka", "look-alike"])
def test_a_fatal_consumer_error_stops_the_batch_after_the_records_before_it(real: bool) -> None:
    """The router hands the first message carrying an error back to Python, which raises on a fatal one; the
    records before it are routed and none after it."""
    rows = make_rows(400, 3, ChaosConfig(), partitions=1)
    part = new_partition(0, StateConfig(window_sizes=SIZES))
    make = _message if real else _Msg
    msgs = [make(p, o, v, ts) for p, o, v, ts in rows]
    fatal = KafkaError(KafkaError._FATAL, "broker gone", fatal=True)
    failed = Message(topic="t", partition=0, offset=-1, error=fatal) if real else _Msg(0, -1, None, 0, fatal)
    with pytest.raises(PulseError, match="broker gone"):
        route_batch({0: part}, [*msgs[:150], failed, *msgs[150:]])
    settle()
    assert part.next_offset == rows[149][1] + 1
