"""The engine's partition state, fed in arbitrary batch sizes, equals the simple reference recompute.

No Kafka here: this pins the aggregation logic itself (batching, late/duplicate rules, funnel, entities),
while tests/aggregate/test_engine_kafka.py proves the same through the real broker, crashes and rebalances.
"""

from __future__ import annotations

from itertools import islice

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate import changelog, docs
from pulse.aggregate.state import PartitionState, StateConfig
from pulse.events.validate import validate
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.partitioner import partition_for
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.verify.diff import diff_documents
from pulse.verify.reference import recompute

SIZES = (10_000, 60_000, 3_600_000)


def run_engine(rows: list[tuple[int, int, bytes, int]], batch: int, cfg: StateConfig, detail_every: int = 1,
               user_every: int = 1) -> dict:
    """Feed ``rows`` in batches, flushing after each; item shards go out every ``detail_every``th flush and users
    every ``user_every``th (as the engine coalesces them), and the last flush publishes everything."""
    states = {p: PartitionState(p, cfg) for p in {r[0] for r in rows}}
    out: dict = {}
    starts = range(0, len(rows), batch)
    for n, i in enumerate(starts, 1):
        for p, offset, value, ts in rows[i:i + batch]:
            states[p].process(offset, None, value, ts)
        last = n == len(starts)
        details, users = last or n % detail_every == 0, last or n % user_every == 0
        for st_ in states.values():
            st_.apply_pending()
            st_.expire()
            finals = st_.final_windows()
            changelog.changed_records(st_, finals)
            published = docs.changed_docs(st_, finals, 0, details, users and details)
            out.update((k, orjson.loads(orjson.dumps(v))) for k, v in published)
            st_.drop(finals)
            st_.clear_dirty(published=details, users_published=users and details)
    return out


def make_rows(n: int, seed: int, chaos: ChaosConfig, partitions: int = 3) -> list[tuple[int, int, bytes, int]]:
    records = islice(Chaos(Traffic(TrafficConfig(seed=seed, users=300, items=200, rate=50.0,
                                                 start_ms=1_795_000_000_000)), chaos), n)
    next_offset = [0] * partitions
    rows = []
    for _tag, key, value, send in records:
        p = partition_for(key, partitions)
        rows.append((p, next_offset[p], value, send))
        next_offset[p] += 1
    return rows


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 700), grace_s=st.integers(1, 60),
       late=st.floats(0, 0.1), dup=st.floats(0, 0.1), bad=st.floats(0, 0.1))
def test_engine_equals_reference_for_any_batching(seed: int, batch: int, grace_s: int, late: float, dup: float,
                                                 bad: float) -> None:
    grace = grace_s * 1000
    rows = make_rows(1500, seed, ChaosConfig(late_fraction=late, duplicate_fraction=dup, invalid_fraction=bad,
                                             disorder_fraction=0.05, grace_ms=grace))
    cfg = StateConfig(window_sizes=SIZES, grace_ms=grace, dedup_horizon_ms=grace * 2)
    expected = recompute(rows, SIZES, grace, grace * 2)
    diff = diff_documents(expected, run_engine(rows, batch, cfg))
    assert diff.ok, diff.summary()


def test_restored_state_continues_exactly() -> None:
    """Serialise to the changelog mid-stream, rebuild a fresh state from it, continue: same result."""
    rows = make_rows(4000, 5, ChaosConfig(0.03, 0.03, 0.03, 0.03))
    rows = [r for r in rows if r[0] == 0]
    cfg = StateConfig(window_sizes=SIZES)
    half = len(rows) // 2
    st_ = PartitionState(0, cfg)
    log: list = []
    out: dict = {}
    for chunk in (rows[:half], rows[half:]):
        if chunk is rows[half:]:
            st_ = PartitionState(0, cfg)
            changelog.restore(st_, [(offset, k, v) for offset, (k, v) in enumerate(log)])
            # the re-read of recent ids that restore_partition performs from Kafka
            for _, _offset, value, ts in rows[:half]:
                e = validate(value, ts)
                if hasattr(e, "event_id") and e.ts >= st_.watermark.value - cfg.dedup_horizon_ms:
                    st_.seen.setdefault(e.event_id, e.ts)
        for _, offset, value, ts in chunk:
            st_.process(offset, None, value, ts)
        st_.apply_pending()
        st_.expire()
        finals = st_.final_windows()
        log.extend(changelog.changed_records(st_, finals))
        out.update((k, orjson.loads(orjson.dumps(v))) for k, v in docs.changed_docs(st_, finals, 0))
        log.extend(changelog.published_markers(True, True))
        st_.drop(finals)
        st_.clear_dirty()
    diff = diff_documents(recompute(rows, SIZES, 30_000, 30_000), out)
    assert diff.ok, diff.summary()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(20, 400), detail_every=st.integers(1, 6),
       user_every=st.integers(1, 8))
def test_coalesced_item_and_user_documents_still_equal_the_reference(seed: int, batch: int, detail_every: int,
                                                                    user_every: int) -> None:
    """Packed item shards and users published only every few flushes: nothing changed in between is lost."""
    rows = make_rows(2000, seed, ChaosConfig(0.02, 0.02, 0.02, 0.02))
    cfg = StateConfig(window_sizes=SIZES)
    out = run_engine(rows, batch, cfg, detail_every, user_every)
    diff = diff_documents(recompute(rows, SIZES, 30_000, 30_000), out)
    assert diff.ok, diff.summary()


def test_item_shards_hold_each_item_once_and_only_changed_shards_are_rendered() -> None:
    rows = make_rows(3000, 9, ChaosConfig())
    st_ = PartitionState(0, StateConfig(window_sizes=(3_600_000,)))
    for _, offset, value, ts in (r for r in rows if r[0] == 0):
        st_.process(offset, None, value, ts)
    st_.apply_pending()
    (win,) = st_.windows.values()
    every = docs.window_item_docs(win, 0, False, 1, None)
    items = [row["item_id"] for _, d in every for row in d["items"]]
    assert sorted(items) == sorted(win.items.members()) and len(set(items)) == len(items)
    assert all(docs.item_shard(row["item_id"]) == d["shard"] for _, d in every for row in d["items"])
    changed = set(sorted(win.items.members())[:3])
    some = docs.window_item_docs(win, 0, False, 1, changed)
    assert {d["shard"] for _, d in some} == {docs.item_shard(i) for i in changed}
    expanded = dict(docs.expand(every))
    assert len(expanded) == len(items) and all(d["kind"] == "window_item" for d in expanded.values())


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(30, 300), detail_every=st.integers(1, 5),
       user_every=st.integers(1, 5), crash_at=st.floats(0.2, 0.8))
def test_a_crash_between_coalesced_publications_loses_no_document(seed: int, batch: int, detail_every: int,
                                                                  user_every: int, crash_at: float) -> None:
    """Flush as the engine does (item shards and users only every few flushes, published markers in the log),
    stop without a final flush, restore from the log and finish: every document still equals the reference."""
    rows = [r for r in make_rows(3000, seed, ChaosConfig(0.02, 0.02, 0.02, 0.02)) if r[0] == 1]
    cfg = StateConfig(window_sizes=SIZES)
    cut = int(len(rows) * crash_at)
    log: list = []
    out: dict = {}
    st_ = PartitionState(1, cfg)
    for second, part in enumerate((rows[:cut], rows[cut:])):
        if second:
            st_ = PartitionState(1, cfg)  # the crash: only the log survives
            changelog.restore(st_, [(offset, k, v) for offset, (k, v) in enumerate(log)])
            st_.seen.update({e.event_id: e.ts for _, _, value, ts in rows[:cut]
                             if hasattr(e := validate(value, ts), "event_id")})
        chunks = range(0, len(part), batch)
        for n, i in enumerate(chunks, 1):
            for _, offset, value, ts in part[i:i + batch]:
                st_.process(offset, None, value, ts)
            st_.apply_pending()
            st_.expire()
            finals = st_.final_windows()
            done = bool(second) and n == len(chunks)
            details = done or n % detail_every == 0
            users = done or (details and n % user_every == 0)
            log.extend(changelog.changed_records(st_, finals))
            published = docs.changed_docs(st_, finals, 0, details, users)
            out.update((k, orjson.loads(orjson.dumps(v))) for k, v in published)
            if published:
                log.extend(changelog.published_markers(details, users))
            st_.drop(finals)
            st_.clear_dirty(published=details, users_published=users)
    diff = diff_documents(recompute(rows, SIZES, 30_000, 30_000), out)
    assert diff.ok, diff.summary()
