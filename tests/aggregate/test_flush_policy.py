"""The flush policy tells a busy live stream from a backlog by the age of what it reads, not by batch size alone:
at tens of thousands of events a second every batch comes back full, and treating that as a backlog held every
event back for the backlog's longer flush interval."""

from __future__ import annotations

from pulse.aggregate.flush_policy import LIVE_AGE_FLUSHES, FlushPolicy


def _policy() -> FlushPolicy:
    return FlushPolicy(flush_interval_s=1.0, backlog_flush_interval_s=5.0, batch_size=100)


def test_full_batches_of_fresh_records_keep_the_live_interval() -> None:
    policy = _policy()
    for _ in range(10):
        policy.consumed(100, newest_age_s=0.3)
    assert policy.full and policy.behind  # (reaching the end of what it read still flushes at once)
    assert policy.interval == 1.0


def test_full_batches_of_old_records_are_a_backlog() -> None:
    policy = _policy()
    policy.consumed(100, newest_age_s=LIVE_AGE_FLUSHES * 1.0 + 0.5)
    assert policy.behind and policy.interval == 5.0
    # a partial batch at the tail does not change what the backlog was; full fresh batches do
    policy.consumed(10, newest_age_s=0.1)
    assert policy.interval == 5.0
    policy.consumed(100, newest_age_s=0.1)
    assert policy.interval == 1.0
    policy.flushed(caught_up=True)
    assert not policy.behind


def test_records_without_a_timestamp_count_as_a_backlog_when_batches_are_full() -> None:
    policy = _policy()
    policy.consumed(100)
    assert policy.interval == 5.0
    quiet = _policy()
    quiet.consumed(40, newest_age_s=30.0)
    assert not quiet.behind and quiet.interval == 1.0


def test_user_documents_cost_the_same_share_of_events_at_any_rate_above_the_floor() -> None:
    policy = FlushPolicy(1.0, 5.0, 1000, user_writes_per_1000=20.0, user_floor=5)
    assert policy.users_budget(0, 0) == 5  # the first flush: nothing accepted yet, the floor
    assert policy.users_budget(0, 500) == 10  # 500 events: 2 %
    assert policy.users_budget(0, 50_500) == 1_000  # a hundred times the events, a hundred times the users
    assert policy.users_budget(0, 50_600) == 5  # a quiet flush still publishes the floor
    assert policy.users_budget(1, 10_000) == 5  # each partition counts its own events
    assert policy.users_budget(1, 20_000) == 200
