"""What a flush publishes besides summaries (``native/src/publish.rs``): windows shorter than a minute keep no item
rows; breakdowns and user sketches of windows from a minute on wait for details flushes; a window's changed shards
go out at most every half of its size and 1/12 of it (a minute to a quarter hour), the item state every five
minutes; a
closing window sends only the shards that changed since, with finality in its summary alone; and a flush that
publishes everything does so whatever the cadence. That the documents still equal the reference
across batchings and restarts is pinned in test_partition_vs_reference.py."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import orjson

from pulse.aggregate.model import ITEMS_FROM_MS
from pulse.aggregate.partition import EVERY_USER, Details, Partition, StateConfig, new_partition, route

BASE = 1_795_000_000_000  # event time, a day boundary is far
SIZES = (10_000, 60_000, 3_600_000)


def _event(n: int, ts: int, item: str) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "event_type": "view", "ts": ts, "user_id": f"u{n % 7}",
                         "session_id": f"s{n % 7}", "item_id": item})


class Feed:
    """A partition fed one event per item per step, flushed after each step at a wall clock a second later."""

    def __init__(self, sizes: tuple[int, ...] = SIZES) -> None:
        self.st: Partition = new_partition(0, StateConfig(window_sizes=sizes, grace_ms=1_000))
        self.n = 0
        self.now = BASE  # the wall clock

    def route(self, ts: int, items: list[str]) -> None:
        for item in items:
            route(self.st, self.n, None, _event(self.n, ts, item), ts)
            self.n += 1

    def flush(self, details: Details = Details.DUE) -> list[dict]:
        self.now += 1_000
        flushed = self.st.flush(details, EVERY_USER, self.now)
        self.st.handed_over()
        return [] if flushed is None else [orjson.loads(d.value) for d in flushed.documents]


def test_windows_shorter_than_a_minute_keep_no_item_rows() -> None:
    feed = Feed()
    feed.route(BASE, ["a", "b"])
    docs = feed.flush(Details.ALL)
    assert {d["window"] for d in docs if d["kind"] == "window_items"} == {"1m", "1h"}
    assert {d["window"] for d in docs if d["kind"] == "window"} == {"10s", "1m", "1h"}
    assert ITEMS_FROM_MS == 60_000
    # with no window that long, the longest keeps them
    only_short = Feed((10_000, 30_000))
    only_short.route(BASE, ["a"])
    assert {d["window"] for d in only_short.flush(Details.ALL) if d["kind"] == "window_items"} == {"30s"}


def test_changed_shards_go_out_at_most_every_half_window_and_a_twelfth_of_it() -> None:
    feed = Feed((*SIZES, 86_400_000))
    published: dict[str, list[int]] = defaultdict(list)
    for step in range(1000):  # 1000 s of wall clock, events all in one day, hour and minute
        feed.route(BASE + step, [f"i{step % 40}"])
        for d in feed.flush():
            kind = d["kind"] if d["kind"] != "window_items" else f"window_items:{d['window']}"
            if feed.now not in published[kind]:
                published[kind].append(feed.now)
    assert len(published["window"]) == 1000  # summaries every flush
    every = {kind: {b - a for a, b in pairwise(times)} for kind, times in published.items()}
    assert every["window_items:1m"] == {30_000}
    assert every["window_items:1h"] == {300_000} and len(published["window_items:1h"]) == 4
    assert every["window_items:1d"] == {900_000}
    assert every["items"] == {300_000}


def test_breakdowns_of_minute_windows_and_longer_wait_for_details_flushes() -> None:
    feed = Feed()
    sent: dict[tuple[str, str], list[int]] = defaultdict(list)
    details = (4, 9, 14, 19)
    for step in range(20):
        feed.route(BASE + step * 10, [f"i{step % 3}"])
        for d in feed.flush(Details.DUE if step in details else Details.CLOSING):
            if d["kind"] in ("window_dims", "window_users"):
                sent[(d["kind"], d["window"])].append(step)
    assert sent[("window_dims", "10s")] == list(range(20))  # the live view's: every flush
    assert sent[("window_dims", "1m")] == sent[("window_dims", "1h")] == list(details)
    assert sent[("window_users", "1h")][0] == 4 and set(sent[("window_users", "1h")]) <= set(details)


def test_a_closing_window_sends_only_its_changed_shards_and_its_summary_says_final() -> None:
    feed = Feed((60_000,))
    items = [f"item-{k}" for k in range(200)]  # every shard
    feed.route(BASE, items)
    first = [d for d in feed.flush(Details.ALL) if d["kind"] == "window_items"]
    assert len(first) > 20 and all("final" not in d for d in first)
    feed.route(BASE + 1, ["item-7"])  # one shard changes
    feed.route(BASE + 70_000, ["later"])  # the watermark passes the first minute
    docs = feed.flush(Details.CLOSING)
    closing = [d for d in docs if d["kind"] == "window_items" and d["start"] == BASE - BASE % 60_000]
    assert [[row["item_id"] for row in d["items"] if row["item_id"] == "item-7"] for d in closing] == [["item-7"]]
    summary = next(d for d in docs if d["kind"] == "window" and d["start"] == BASE - BASE % 60_000)
    assert summary["final"] is True and summary["counts"] == {"view": 201}


def test_publishing_everything_ignores_the_cadence() -> None:
    feed = Feed()
    feed.route(BASE, ["a"])
    feed.flush(Details.DUE)  # publishes at the first chance
    feed.route(BASE + 1, ["b"])
    assert not [d for d in feed.flush(Details.DUE) if d["kind"] in ("window_items", "items")]  # not due yet
    docs = feed.flush(Details.ALL)
    assert {d["window"] for d in docs if d["kind"] == "window_items"} == {"1m", "1h"}
    assert any(d["kind"] == "items" for d in docs)


def test_a_changed_users_document_waits_at_most_the_max_delay_whatever_the_budget() -> None:
    st_ = new_partition(0, StateConfig(window_sizes=(60_000,), user_max_delay_ms=10_000))

    def users(now: int, budget: int = 0) -> list[str]:
        flushed = st_.flush(Details.CLOSING, budget, now)
        st_.handed_over()
        return [] if flushed is None else [d.id for d in flushed.documents if d.kind == "user"]

    for n in range(100):
        route(st_, n, None, _event(n, BASE + n, "a").replace(b'"u%d"' % (n % 7), b'"user%03d"' % n), BASE + n)
    assert users(BASE) == []  # queued by this flush
    assert users(BASE + 4_000, budget=3) == []  # the budget alone does not make a quiet partition flush
    route(st_, 100, None, _event(100, BASE + 100, "a").replace(b'"u2"', b'"user050"'), BASE + 100)  # still queued
    assert users(BASE + 5_000, budget=3) == ["user:user000", "user:user001", "user:user002"]  # oldest first
    route(st_, 101, None, _event(101, BASE + 101, "a").replace(b'"u3"', b'"late-comer"'), BASE + 101)
    assert len(users(BASE + 10_000)) == 97  # waited 10 s: all that were queued by the first flush
    assert users(BASE + 15_000) == []
    assert users(BASE + 20_000) == ["user:late-comer"]  # queued by the flush at 10 s


def test_breakdowns_logged_but_not_yet_published_go_out_after_a_restore() -> None:
    cfg = StateConfig(window_sizes=(60_000, 3_600_000), grace_ms=1_000)
    st_ = new_partition(0, cfg)
    log: list = []
    for n in range(5):
        route(st_, n, None, _event(n, BASE + n, f"i{n}"), BASE + n)
    flushed = st_.flush(Details.CLOSING, EVERY_USER, BASE)  # logged; breakdowns wait for a details flush
    assert flushed is not None and not [d for d in flushed.documents if d.kind in ("window_dims", "window_users")]
    log.extend((r.key, r.value) for r in flushed.records)
    st_.handed_over()
    again = new_partition(0, cfg)  # a crash: only the log survives
    again.restore([(offset, r[0], r[1]) for offset, r in enumerate(log)])
    flushed = again.flush(Details.DUE, EVERY_USER, BASE + 1_000)
    assert flushed is not None
    sent = {(d.kind, orjson.loads(d.value)["window"]) for d in flushed.documents if d.kind.startswith("window_")}
    assert {("window_dims", "1m"), ("window_dims", "1h"), ("window_users", "1h")} <= sent
