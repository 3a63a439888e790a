"""Case 1 of the real world: input not keyed by user id. A plain client writes null keys (a random partition per
record) and keys by session (another partition than the user's); some events are re-sent to another partition.
Records whose user another partition owns are forwarded to it exactly once, across a SIGKILL: unique users per
window, user documents and duplicate detection are exact, against a count made here from what was produced, and
`pulse verify` (which checks that every such record was forwarded once) agrees with Elasticsearch."""

from __future__ import annotations

import signal
import time
from collections import defaultdict

from elasticsearch import Elasticsearch

from tests.aggregate.harness import read_latest_docs, run_aggregator_until_idle, run_store, start_aggregator
from tests.cli_helpers import run_pulse
from tests.names import unique
from tests.realworld.plain import count_records, event, now_ms, produce

HOUR = 3_600_000
FORWARDING = "forwarding records not keyed by user id"


def test_input_not_keyed_by_user_id_is_exact(bootstrap, es_url, new_topic, index_prefix, tmp_path) -> None:
    topic, group = new_topic(partitions=6, prefix="unkeyed"), unique("g")
    base = now_ms() - 60_000
    first = [event(n, base + 10 * n, user_id=f"u{n % 41}") for n in range(900)]
    second = [event(n, base + 10 * n, user_id=f"u{n % 41}") for n in range(900, 1500)]
    resent = first[::30]  # the same events again, now keyed by session: most land in another partition
    log = tmp_path / "agg.log"
    produce(bootstrap, topic, first)  # null keys
    agg = start_aggregator(topic, group, "--grace", "5m", log=log)
    deadline = time.monotonic() + 60
    while count_records(bootstrap, f"{group}.repartition") == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    agg.send_signal(signal.SIGKILL)  # with forwarded records committed, and perhaps some not yet taken
    agg.wait(30)
    produce(bootstrap, topic, second, key=lambda e: e["session_id"])
    produce(bootstrap, topic, resent, key=lambda e: e["session_id"])
    run_aggregator_until_idle(topic, group, "--grace", "5m")
    assert FORWARDING in log.read_text()

    events = first + second  # the re-sent ones are duplicates
    docs = read_latest_docs(bootstrap, f"{group}.aggregates")
    partitions = [d for i, d in docs.items() if i.startswith("partition:")]
    assert sum(d["accepted"] for d in partitions) == len(events)
    assert sum(d["duplicates"] for d in partitions) == len(resent)
    assert sum(d["forwarded"] for d in partitions) > len(events) // 2
    users: dict[int, set[str]] = defaultdict(set)
    for e in events:
        users[e["ts"] // HOUR * HOUR].add(e["user_id"])
    for start, expected in users.items():
        counted = sum(d["unique_users"] for i, d in docs.items() if i.startswith(f"window:1h:{start}:"))
        assert counted == len(expected), (start, counted, len(expected))  # partial counts add: users never span
    per_user: dict[str, int] = defaultdict(int)
    for e in events:
        per_user[e["user_id"]] += 1
    user_docs = {d["user_id"]: d for i, d in docs.items() if i.startswith("user:")}
    assert {u: sum(d["counts"].values()) for u, d in user_docs.items()} == per_user

    run_store(topic, group, index_prefix)
    Elasticsearch(es_url).indices.refresh(index=f"{index_prefix}-*")
    ok = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix, "--grace", "5m")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "each forwarded once" in ok.stdout
