"""The state's byte estimate (the pulse_state_bytes metric) follows what the state holds."""

from __future__ import annotations

import orjson

from pulse.aggregate.partition import StateConfig, decide, new_partition


def _event(n: int, users: int) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "event_type": "view", "ts": 1_700_000_000_000 + n,
                         "user_id": f"u{n % users}", "session_id": f"s{n % users}", "item_id": f"i{n % 50}",
                         "category": "books", "status": "ok"})


def test_the_estimate_grows_with_users_and_counts_at_least_their_ids() -> None:
    cfg = StateConfig(window_sizes=(10_000, 60_000), grace_ms=30_000, correct_within_ms=30_000)
    small, large = new_partition(0, cfg), new_partition(0, cfg)
    assert small.state_bytes == 0
    for n in range(2_000):
        decide(small, n, None, _event(n, 10), 1_700_000_000_000 + n)
        decide(large, n, None, _event(n, 2_000), 1_700_000_000_000 + n)
    assert large.sizes.users == 2_000 and small.sizes.users == 10
    assert large.state_bytes > small.state_bytes + 2_000 * len("u1999")


def test_a_day_window_counts_users_in_fixed_registers_while_an_hour_keeps_a_set() -> None:
    """Each window keeps the same items and breakdowns; only the user set differs: an hour's grows with its users,
    a day's HyperLogLog does not."""
    def cost(sizes: tuple[int, ...], users: int) -> int:
        st_ = new_partition(0, StateConfig(window_sizes=sizes))
        for n in range(users):
            decide(st_, n, None, _event(n, users), 1_700_000_000_000 + n)
        return st_.state_bytes

    hour, day = 3_600_000, 86_400_000
    for users in (20_000, 80_000):
        base = cost((10_000,), users)
        with_hour, with_day = cost((10_000, hour), users) - base, cost((10_000, day), users) - base
        assert with_day < with_hour
        if users == 80_000:
            assert with_hour > 4 * 80_000  # its set: at least a u32 id and a control byte per user
            assert with_day < 64 * 1024  # 16 KiB of registers and the window's item rows, not a set
