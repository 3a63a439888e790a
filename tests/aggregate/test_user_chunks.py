"""A flush sends a bounded number of user documents; the users are marked published only by the flush that sends
the last of them, so a crash between chunks re-publishes rather than loses."""

from __future__ import annotations

import orjson

from pulse.aggregate.config import StateConfig
from pulse.aggregate.partition import EVERY_USER, Details, new_partition, route
from tests.aggregate.test_partition_vs_reference import restored

BASE = 1_795_000_000_000
USERS = 60_000  # more than one flush sends (USERS_PER_FLUSH, 50,000)


def _fill() -> object:
    st_ = new_partition(0, StateConfig(window_sizes=(60_000,)))
    for n in range(USERS):
        route(st_, n, None, orjson.dumps({"event_id": f"e{n}", "event_type": "view", "ts": BASE + n,
                                          "user_id": f"u{n}", "session_id": f"s{n}"}), BASE + n)
    return st_


def test_users_go_out_in_chunks_and_only_the_last_chunk_marks_them_published() -> None:
    st_, log, sent = _fill(), [], set()
    for expected_left in (USERS - 50_000, 0):
        flushed = st_.flush(Details.ALL, EVERY_USER, 0)
        log.extend((r.key, r.value) for r in flushed.records)
        users = {d.id for d in flushed.documents if d.kind == "user"}
        assert users and not users & sent
        sent |= users
        marked = any(r.key == b"pub/users" for r in flushed.records)
        assert marked == (expected_left == 0)
        st_.handed_over()
        assert st_.pending_users() == expected_left
        if expected_left:  # a crash here: the restored state owes every user again (none marked published)
            assert restored(0, StateConfig(window_sizes=(60_000,)), list(log), []).pending_users() == USERS
    assert len(sent) == USERS
    assert restored(0, StateConfig(window_sizes=(60_000,)), log, []).pending_users() == 0
