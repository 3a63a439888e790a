"""The state's byte estimate (the pulse_state_bytes metric) follows what the state holds."""

from __future__ import annotations

import orjson

from pulse.aggregate.state import StateConfig, decide, new_partition


def _event(n: int, users: int) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "event_type": "view", "ts": 1_700_000_000_000 + n,
                         "user_id": f"u{n % users}", "session_id": f"s{n % users}", "item_id": f"i{n % 50}",
                         "category": "books", "status": "ok"})


def test_the_estimate_grows_with_users_and_counts_at_least_their_ids() -> None:
    cfg = StateConfig(window_sizes=(10_000, 60_000), grace_ms=30_000, dedup_horizon_ms=30_000)
    small, large = new_partition(0, cfg), new_partition(0, cfg)
    assert small.state_bytes == 0
    for n in range(2_000):
        decide(small, n, None, _event(n, 10), 1_700_000_000_000 + n)
        decide(large, n, None, _event(n, 2_000), 1_700_000_000_000 + n)
    assert large.sizes.users == 2_000 and small.sizes.users == 10
    assert large.state_bytes > small.state_bytes + 2_000 * len("u1999")
