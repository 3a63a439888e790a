"""The engine's partition state, fed in arbitrary batch sizes, equals the simple reference recompute.

No Kafka here: this pins the aggregation logic itself (batching, late/duplicate rules, funnel, entities),
while tests/aggregate/test_engine_kafka.py proves the same through the real broker, crashes and rebalances.
"""

from __future__ import annotations

import json
from itertools import islice

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate import docs
from pulse.aggregate.partition import (
    EVERY_USER,
    Details,
    Partition,
    StateConfig,
    decide,
    new_partition,
    remember_recent,
    route,
)
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.partitioner import partition_for
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.verify.diff import diff_documents
from pulse.verify.reference import recompute

SIZES = (10_000, 60_000, 3_600_000, 86_400_000)
PARTIAL_USERS = 7
"""A flush's user budget smaller than the users that changed: the rest wait for the next flushes."""


def flush(st_: Partition, out: dict, details: Details = Details.ALL, users: int = EVERY_USER,
          log: list | None = None, now: int = 0) -> list:
    """One flush at wall clock ``now`` as the engine does it, "committed" at once; documents land in ``out``,
    records in ``log``. ``users``: how many pending user documents go out (a count: a bool would publish one)."""
    assert not isinstance(users, bool)
    flushed = st_.flush(details, users, now)
    if flushed is None:
        return []
    out.update((d.id, orjson.loads(d.value)) for d in flushed.documents)
    if log is not None:
        log.extend((r.key, r.value) for r in flushed.records)
    st_.handed_over()
    return flushed.documents


def restored(partition: int, cfg: StateConfig, log: list, before: list) -> Partition:
    """A fresh state from the changelog ``log``, with the ids of ``before`` (rows already consumed) re-read for
    duplicate detection, as restore_partition does from Kafka."""
    st_ = new_partition(partition, cfg)
    st_.restore([(offset, k, v) for offset, (k, v) in enumerate(log)])
    remember_recent(st_, ((value, ts) for _, _, value, ts in before), st_.watermark - cfg.correct_within_ms)
    return st_


def details(last: bool, n: int, detail_every: int) -> Details:
    """What the ``n``th flush does about item shards: every ``detail_every``th is a details flush, the last
    publishes everything."""
    return Details.ALL if last else Details.DUE if n % detail_every == 0 else Details.CLOSING


def run_engine(rows: list[tuple[int, int, bytes, int]], batch: int, cfg: StateConfig, detail_every: int = 1,
               user_every: int = 1, fast: bool = True) -> dict:
    """Feed ``rows`` in batches, flushing after each, a second of wall clock apart; item shards go out on their
    cadence on every ``detail_every``th flush and users every ``user_every``th (as the engine coalesces them),
    and the last flush publishes everything. ``fast=False`` sends every record through the contract's validator
    instead of the native fast path."""
    states = {p: new_partition(p, cfg) for p in {r[0] for r in rows}}
    out: dict = {}
    starts = range(0, len(rows), batch)
    for n, i in enumerate(starts, 1):
        for p, offset, value, ts in rows[i:i + batch]:
            (route if fast else decide)(states[p], offset, None, value, ts)
        last = n == len(starts)
        users = EVERY_USER if last else PARTIAL_USERS if n % user_every == 0 else 0  # oldest changes first
        for st_ in states.values():
            flush(st_, out, details(last, n, detail_every), users, now=n * 1000)
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
    cfg = StateConfig(window_sizes=SIZES, grace_ms=grace, correct_within_ms=grace * 2)
    expected = recompute(rows, SIZES, grace, grace * 2)
    diff = diff_documents(expected, run_engine(rows, batch, cfg))
    assert diff.ok, diff.summary()


def _rename_event_ids(rows: list[tuple[int, int, bytes, int]], prefix: str) -> list[tuple[int, int, bytes, int]]:
    """The same rows with every event id replaced one-to-one by ``prefix`` + a number (duplicates stay duplicates);
    records that are not JSON objects with a string id are left as they are."""
    names: dict[str, str] = {}
    out = []
    for p, offset, value, ts in rows:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("event_id"), str):
            event["event_id"] = names.setdefault(event["event_id"], f"{prefix}{len(names)}")
            value = orjson.dumps(event)
        out.append((p, offset, value, ts))
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), repeat=st.integers(0, 40), char=st.sampled_from(["e", "é", "-", "€"]))
def test_duplicates_are_exact_for_ids_of_any_length(seed: int, repeat: int, char: str) -> None:
    """Short ids are packed into integers, long ones kept as text (`EventKey`): ids that share a long prefix, or
    straddle the 15-byte boundary, must still count as duplicates exactly when they are equal."""
    rows = _rename_event_ids(make_rows(1200, seed, ChaosConfig(late_fraction=0.02, duplicate_fraction=0.1,
                                                               invalid_fraction=0.02)), char * repeat)
    cfg = StateConfig(window_sizes=SIZES)
    diff = diff_documents(recompute(rows, SIZES, cfg.grace_ms, cfg.correct_within_ms), run_engine(rows, 300, cfg))
    assert diff.ok, diff.summary()


def test_restored_state_continues_exactly() -> None:
    """Serialise to the changelog mid-stream, rebuild a fresh state from it, continue: same result."""
    rows = make_rows(4000, 5, ChaosConfig(0.03, 0.03, 0.03, 0.03))
    rows = [r for r in rows if r[0] == 0]
    cfg = StateConfig(window_sizes=SIZES)
    half = len(rows) // 2
    st_ = new_partition(0, cfg)
    log: list = []
    out: dict = {}
    for second, chunk in enumerate((rows[:half], rows[half:])):
        if second:
            st_ = restored(0, cfg, log, rows[:half])
        for _, offset, value, ts in chunk:
            route(st_, offset, None, value, ts)
        flush(st_, out, log=log)
    diff = diff_documents(recompute(rows, SIZES, cfg.grace_ms, cfg.correct_within_ms), out)
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
    diff = diff_documents(recompute(rows, SIZES, cfg.grace_ms, cfg.correct_within_ms), out)
    assert diff.ok, diff.summary()


def test_item_shards_hold_each_item_once_and_only_changed_shards_are_rendered() -> None:
    rows = [r for r in make_rows(3000, 9, ChaosConfig()) if r[0] == 0]
    st_ = new_partition(0, StateConfig(window_sizes=(3_600_000,)))
    for _, offset, value, ts in rows[:-20]:
        route(st_, offset, None, value, ts)
    out: dict = {}
    every = [(d.id, orjson.loads(d.value)) for d in flush(st_, out) if d.kind == "window_items"]
    items = [row["item_id"] for _, d in every for row in d["items"]]
    assert len(set(items)) == len(items) > 50
    assert all(docs.item_shard(row["item_id"]) == d["shard"] for _, d in every for row in d["items"])
    changed = set()
    for _, offset, value, ts in rows[-20:]:
        route(st_, offset, None, value, ts)
        if (item := orjson.loads(value).get("item_id")) is not None:
            changed.add(item)
    some = [orjson.loads(d.value) for d in flush(st_, out) if d.kind == "window_items"]
    assert {d["shard"] for d in some} == {docs.item_shard(i) for i in changed}
    expanded = dict(docs.expand(every))
    assert len(expanded) == len(items) and all(d["kind"] == "window_item" for d in expanded.values())


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(30, 300), detail_every=st.integers(1, 5),
       user_every=st.integers(1, 5), crash_at=st.floats(0.2, 0.8), compact_after=st.sampled_from([5, 200, 50_000]))
def test_a_crash_between_coalesced_publications_loses_no_document(seed: int, batch: int, detail_every: int,
                                                                  user_every: int, crash_at: float,
                                                                  compact_after: int) -> None:
    """Flush as the engine does (item shards and users only every few flushes, published markers in the log,
    user/session snapshots every few flushes), stop without a final flush, restore from the log and finish:
    every document still equals the reference."""
    rows = [r for r in make_rows(3000, seed, ChaosConfig(0.02, 0.02, 0.02, 0.02)) if r[0] == 1]
    cfg = StateConfig(window_sizes=SIZES, compact_after=compact_after)
    cut = int(len(rows) * crash_at)
    log: list = []
    out: dict = {}
    st_ = new_partition(1, cfg)
    for second, part in enumerate((rows[:cut], rows[cut:])):
        if second:
            st_ = restored(1, cfg, log, rows[:cut])  # the crash: only the log survives
        chunks = range(0, len(part), batch)
        for n, i in enumerate(chunks, 1):
            for _, offset, value, ts in part[i:i + batch]:
                route(st_, offset, None, value, ts)
            done = bool(second) and n == len(chunks)
            users = EVERY_USER if done else PARTIAL_USERS if n % user_every == 0 else 0
            flush(st_, out, details(done, n, detail_every), users, log, now=(second * 10**6 + n) * 1000)
    diff = diff_documents(recompute(rows, SIZES, cfg.grace_ms, cfg.correct_within_ms), out)
    assert diff.ok, diff.summary()


def test_snapshots_keep_the_changelog_to_live_state() -> None:
    """Users and sessions are folded into snapshots: after many flushes the live (compacted) log holds about one
    entry per live user and session, not one per change, and restoring from it equals the reference."""
    rows = [r for r in make_rows(6000, 3, ChaosConfig()) if r[0] == 2]
    cfg = StateConfig(window_sizes=SIZES, compact_after=100)
    st_, log, out = new_partition(2, cfg), [], {}
    for i in range(0, len(rows), 25):
        for _, offset, value, ts in rows[i:i + 25]:
            route(st_, offset, None, value, ts)
        flush(st_, out, log=log)
    live: dict = {}
    for key, value in log:
        if value is None:
            live.pop(key, None)
        else:
            live[key] = value
    deltas = [k for k in live if k.startswith((b"e/", b"S/"))]
    written = [k for k, _ in log if k.startswith((b"e/", b"S/"))]
    assert len(deltas) < len(written) / 3
    users, sessions = st_.sizes.users, st_.sizes.sessions
    entries = sum(len(msgspec.msgpack.decode(live[k])) for k in deltas)
    assert entries <= 3 * (users + sessions) + 100
    again = restored(2, cfg, log, rows)
    again_out: dict = {}
    flush(again, again_out)  # a restored state publishes what it holds as pending: nothing, after a full flush
    assert again.counters == st_.counters
    assert (again.sizes.users, again.sizes.sessions) == (st_.sizes.users, st_.sizes.sessions)
    diff = diff_documents(recompute(rows, SIZES, cfg.grace_ms, cfg.correct_within_ms), out)
    assert diff.ok, diff.summary()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), bad=st.floats(0, 0.3))
def test_the_native_fast_path_decides_as_the_contract_validator(seed: int, bad: float) -> None:
    """Every record through the fast path, or every record through `pulse.events.validate`: the same documents
    (including the dead-letter accounting)."""
    rows = make_rows(800, seed, ChaosConfig(late_fraction=0.02, duplicate_fraction=0.02, invalid_fraction=bad))
    cfg = StateConfig(window_sizes=SIZES)
    assert run_engine(rows, 100, cfg, fast=True) == run_engine(rows, 100, cfg, fast=False)


_EDGES = [None, True, "", "x", "us", "Us", "USD", "usd", "ÄÖ", "ÄÖÜ", "É", "\u00e9t\u00e9", "a" * 16, "a" * 17,
          "a" * 32, "a" * 33, "a" * 64, "a" * 65, "é" * 64, "é" * 65, 0, -1, 1, 2, 10_000, 10_001, 1.0, 1.5, -0.0,
          -0.01, 1e6, 1_000_000.01, 2**63, 946_684_800_000, 946_684_799_999, 4_102_444_800_000, 4_102_444_800_001,
          1_800_000_000_000.0, [1], {"x": 1}]
_ODD_VALUE = st.one_of(st.sampled_from(_EDGES), st.text(max_size=70), st.integers(), st.floats(allow_nan=False))
_FIELDS = ("event_id", "event_type", "ts", "user_id", "session_id", "item_id", "category", "price", "quantity",
           "amount", "currency", "status", "device", "country", "schema_version")


@st.composite
def _near_valid_events(draw: st.DrawFn) -> bytes:
    event = {"event_id": "e1", "event_type": draw(st.sampled_from(["view", "click", "add_to_cart", "purchase", "x"])),
             "ts": 1_800_000_000_000, "user_id": "u1", "session_id": "s1", "item_id": "i1", "category": "books",
             "price": 9.99, "quantity": 1, "amount": 19.99, "currency": "USD", "status": "ok", "device": "web",
             "country": "US", "schema_version": 1}
    for field in draw(st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=3)):
        if draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = draw(_ODD_VALUE)
    if draw(st.booleans()):
        event[draw(st.text(min_size=1, max_size=8))] = draw(_ODD_VALUE)
    raw = json.dumps(event, ensure_ascii=draw(st.booleans())).encode()  # big ints, Infinity, raw UTF-8 too
    if draw(st.booleans()):  # the same field twice, or escapes in names and values
        raw = raw.replace(b'"user_id"', draw(st.sampled_from([b'"user_id":"u2","user_id"', b'"user\\u005fid"'])))
    return raw


@settings(max_examples=600, deadline=None)
@given(raw=_near_valid_events())
def test_the_fast_path_never_accepts_what_the_contract_rejects(raw: bytes) -> None:
    """Odd but almost valid records: whenever the native fast path accepts one, the contract's validator accepts
    it too and the two paths give the same documents; everything else goes to the validator."""
    fast, slow = new_partition(0, StateConfig()), new_partition(0, StateConfig())
    accepted = fast.process(0, None, raw, 1_800_000_000_000)
    decide(slow, 0, None, raw, 1_800_000_000_000)
    if accepted:
        assert slow.counters.dead_lettered == 0, raw  # not dead-lettered by the contract
        fast_docs, slow_docs = {}, {}
        flush(fast, fast_docs)
        flush(slow, slow_docs)
        assert fast_docs == slow_docs


def test_a_stray_control_character_quote_or_backslash_is_never_accepted_anywhere() -> None:
    """The fast path scans strings eight bytes at a time: one raw control character, quote or backslash put at every
    position of valid records (so at every offset within a word) must never be accepted where the contract
    rejects the record."""
    from pulse.events.validate import Rejection, validate

    records = [value for _p, _o, value, _ts in make_rows(40, 7, ChaosConfig())][:6]
    checked = 0
    for raw in records:
        assert new_partition(0, StateConfig()).process(0, None, raw, 1_800_000_000_000)  # the unchanged record
        for at in range(1, len(raw)):
            for byte in (0, 1, 9, 10, 31, 34, 92):
                bad = raw[:at] + bytes([byte]) + raw[at:]
                if new_partition(0, StateConfig()).process(0, None, bad, 1_800_000_000_000):
                    assert not isinstance(validate(bad, 1_800_000_000_000), Rejection), bad
                    checked += 1
    assert checked > 0  # whitespace between tokens is fine, and is accepted


def test_item_shards_past_the_page_size_are_paged_in_documents_and_changelog_and_restore_exactly() -> None:
    """120k distinct items with long ids in one partition and window: every item shard outgrows a page, so its
    documents and changelog records come in pages, each well under Kafka's 1 MB limit; a state restored from
    those pages continues exactly (the reference decides)."""
    n, base = 120_000, 1_795_000_000_000
    rows = [(0, i, orjson.dumps({"event_id": f"e{i}", "event_type": "view", "ts": base + i, "user_id": f"u{i % 97}",
                                 "session_id": f"s{i % 89}", "item_id": f"item-{i:07d}-{'x' * 50}",
                                 "category": "c" * 60}), base + i) for i in range(n)]
    cfg = StateConfig(window_sizes=(3_600_000,))
    st_, log, out = new_partition(0, cfg), [], {}
    for _, offset, value, ts in rows[: n // 2]:
        route(st_, offset, None, value, ts)
    documents = flush(st_, out, log=log)
    assert max(len(d.value) for d in documents) < 400_000
    assert max(len(v or b"") for _, v in log) < 400_000
    paged = {d.id for d in documents if d.id.startswith("window_items:") and ".1:p0" in d.id}
    assert len(paged) == docs.ITEM_SHARDS
    st_ = restored(0, cfg, log, rows[: n // 2])
    for _, offset, value, ts in rows[n // 2:]:
        route(st_, offset, None, value, ts)
    flush(st_, out, log=log)
    diff = diff_documents(recompute(rows, cfg.window_sizes, cfg.grace_ms, cfg.correct_within_ms), out)
    assert diff.ok, diff.summary()
