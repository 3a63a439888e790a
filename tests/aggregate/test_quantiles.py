"""Quantiles of purchase amount and price: every window's sketch, merged across partitions and read after a
restore, is within the stated relative bound of the exact quantiles of the values (computed here by sorting)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate.config import StateConfig
from pulse.aggregate.model import QUANTILES, SKETCH_ACCURACY, MergedSketch, quantile_name, sketch_field
from pulse.aggregate.partition import new_partition, route
from pulse.verify.diff import exact_quantile, sketch_problem
from tests.aggregate.test_partition_vs_reference import flush, restored

HOUR = 3_600_000
BASE = 1_795_000_000_000 // HOUR * HOUR
money = st.integers(0, 100_000_000)  # cents: the contract's 0 … 1,000,000


def _purchase(n: int, amount: int, price: int, status: str = "ok") -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "event_type": "purchase", "ts": BASE + n, "user_id": f"u{n}",
                         "session_id": f"s{n}", "item_id": f"i{n % 5}", "amount": amount / 100,
                         "price": price / 100, "status": status})


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.tuples(money, money, st.integers(0, 2)), min_size=1, max_size=400),
       restart_at=st.floats(0, 1))
def test_merged_sketches_are_within_the_bound_across_partitions_and_a_restart(values: list[tuple[int, int, int]],
                                                                               restart_at: float) -> None:
    cfg = StateConfig(window_sizes=(HOUR,))
    docs: dict = {}
    for p in range(3):  # each partition takes every third purchase; partition 1 restarts midway
        mine = [(n, v) for n, v in enumerate(values) if v[2] == p]
        cut = int(len(mine) * restart_at) if p == 1 else len(mine)
        st_, log, out = new_partition(p, cfg), [], {}
        for second, part in enumerate((mine[:cut], mine[cut:])):
            if second and part:
                st_ = restored(p, cfg, log, [])
            for n, (amount, price, _) in part:
                route(st_, n, None, _purchase(n, amount, price), BASE + n)
            flush(st_, out, log=log)
        docs.update(out)
    summaries = [d for d in docs.values() if d["kind"] == "window"]
    for name, column in (("amount", 0), ("price", 1)):
        merged = MergedSketch()
        for d in summaries:
            merged.add(d[sketch_field(name)])
        exact = [v[column] for v in values]
        assert merged.count == len(exact)
        got = merged.quantiles()
        for q in QUANTILES:
            want = exact_quantile(exact, q)
            assert abs(got[quantile_name(q)] - want) <= SKETCH_ACCURACY * want * (1 + 1e-9), (name, q)


def test_failed_purchases_are_not_sketched_and_a_wrong_sketch_is_caught() -> None:
    st_ = new_partition(0, StateConfig(window_sizes=(HOUR,)))
    for n, status in enumerate(("ok", "payment_failed", "ok")):
        route(st_, n, None, _purchase(n, 10_000 * (n + 1), 500, status), BASE + n)
    out: dict = {}
    flush(st_, out)
    [summary] = [d for d in out.values() if d["kind"] == "window"]
    sketch = summary[sketch_field("amount")]
    assert sketch_problem([10_000, 30_000], sketch) is None
    assert "values sketched" in (sketch_problem([10_000, 30_000, 20_000], sketch) or "")
    shifted = {"zeros": 0, "bins": [[i + 2, n] for i, n in sketch["bins"]]}  # 4 % off: outside the 1 % bound
    assert "not within" in (sketch_problem([10_000, 30_000], shifted) or "")
