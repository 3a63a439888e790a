"""Per-window breakdowns by dimension: exact against a plain count of the input, packed into one document per
window (paged past the page size), and intact through the changelog."""

from __future__ import annotations

from collections import Counter

import msgspec
import orjson

from pulse.aggregate import docs
from pulse.aggregate._core import PAGE_BYTES
from pulse.aggregate.config import StateConfig
from pulse.aggregate.model import DIMENSIONS
from pulse.aggregate.partition import new_partition, route
from pulse.generate.chaos import ChaosConfig
from tests.aggregate.test_partition_vs_reference import flush, make_rows

HOUR = 3_600_000
BASE = 1_795_000_000_000 // HOUR * HOUR


def _event(n: int, **fields: object) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "event_type": "view", "ts": BASE + n, "user_id": f"u{n % 7}",
                         "session_id": f"s{n % 5}", "item_id": f"i{n % 3}", **fields})


def _rows(out: dict) -> dict[tuple[str, str], dict]:
    """The logical breakdown rows of the hour windows, by (dimension, value)."""
    return {(d["dim"], d["value"]): d for _, d in docs.expand(out.items())
            if d["kind"] == "window_dim" and d["window"] == "1h"}


def test_each_dimension_partitions_the_window_like_a_plain_count_of_the_input() -> None:
    rows = [r for r in make_rows(3000, 4, ChaosConfig()) if r[0] == 0]
    st_ = new_partition(0, StateConfig(window_sizes=(HOUR,)))
    for _, offset, value, ts in rows:
        route(st_, offset, None, value, ts)
    out: dict = {}
    flush(st_, out)
    got = _rows(out)
    events = [orjson.loads(v) for _, _, v, _ in rows]
    by_hour = Counter(e["ts"] // HOUR for e in events)
    assert len(by_hour) == 1, "the sample spans one hour"
    for dim in DIMENSIONS:
        want = Counter(e.get(dim, {"status": "ok", "country": "ZZ", "device": "unknown"}.get(dim))
                       for e in events)
        want.pop(None, None)
        have = {value: sum(d["counts"].values()) for (d_, value), d in got.items() if d_ == dim}
        assert have == dict(want), dim
    paid = sum(round(e["amount"] * 100) for e in events if e["event_type"] == "purchase" and e.get("status") == "ok")
    assert sum(d["revenue_cents"] for (dim, _), d in got.items() if dim == "country") == paid
    assert sum(1 for d in out.values() if d["kind"] == "window_dims") == 1, "one packed document per window"


def test_a_breakdown_of_thousands_of_values_is_paged_and_survives_a_restore() -> None:
    cfg = StateConfig(window_sizes=(HOUR,))
    st_ = new_partition(0, cfg)
    n = 6000
    for i in range(n):
        route(st_, i, None, _event(i, category=f"{i:05d}-{'c' * 58}", device=f"d{i % 4}"), BASE + n)
    out: dict = {}
    log: list = []
    documents = flush(st_, out, log=log)
    pages = [d for d in documents if d.kind == "window_dims"]
    assert len(pages) > 1 and all(len(d.value) < 600_000 for d in pages)
    # pages are filled (each but the last past half a page: a page's head does not grow with the window) and a
    # value is listed on the one page that holds its row, so a search for it finds that page
    sizes = [len(d.value) for d in pages]
    assert all(n > PAGE_BYTES // 2 for n in sizes[:-1]) and sum(sizes) < 3 * 1024 * 1024, sizes
    for page in map(orjson.loads, (d.value for d in pages)):
        held = {(r["dim"], r["value"]) for r in page["breakdown"]}
        assert {(dim, v) for dim, vs in page["values"].items() for v in vs} == held
    logged = [(k, v) for k, v in log if k.startswith(b"w/") and b"/d/" in k]
    assert len(logged) > 1 and all(len(v) < 600_000 for _, v in logged)
    rows = _rows(out)
    assert sum(1 for dim, _ in rows if dim == "category") == n
    assert {v: sum(d["counts"].values()) for (dim, v), d in rows.items() if dim == "device"} == {
        f"d{k}": n // 4 for k in range(4)}

    again = new_partition(0, cfg)
    again.restore([(offset, k, v) for offset, (k, v) in enumerate(log)])
    route(again, n, None, _event(n, category="00000-" + "c" * 58, device="d0"), BASE + n)
    after: dict = {}
    flush(again, after)
    rows2 = _rows(after)
    assert rows2[("category", "00000-" + "c" * 58)]["counts"] == {"view": 2}
    assert rows2[("device", "d0")]["counts"] == {"view": n // 4 + 1}
    assert sum(1 for dim, _ in rows2 if dim == "category") == n


def test_a_window_logged_before_breakdowns_restores_its_categories_and_is_tombstoned_whole() -> None:
    """A changelog written by the version that logged a window's categories as one record (``w/…/c``)."""
    cfg = StateConfig(window_sizes=(HOUR,), grace_ms=1000)
    summary = msgspec.msgpack.encode(([("view", 2)], [("ok", 2)], [0, 0, 0, 0], [2, 0, 0, 0]))
    cats = msgspec.msgpack.encode([("books", [("view", 2)], 0, 0)])
    log = [(f"w/{HOUR}/{BASE}/s".encode(), summary), (f"w/{HOUR}/{BASE}/c".encode(), cats)]
    st_ = new_partition(0, cfg)
    st_.restore([(offset, k, v) for offset, (k, v) in enumerate(log)])
    route(st_, 0, None, _event(0, category="books", ts=BASE + 5), BASE + 5)
    out: dict = {}
    flush(st_, out)
    assert _rows(out)[("category", "books")]["counts"] == {"view": 3}
    route(st_, 1, None, _event(1, ts=BASE + 2 * HOUR), BASE + 2 * HOUR)  # closes the hour
    records: list = []
    flush(st_, out, log=records)
    tombstones = {k for k, v in records if v is None}
    assert f"w/{HOUR}/{BASE}/c".encode() in tombstones and f"w/{HOUR}/{BASE}/d/0".encode() in tombstones
