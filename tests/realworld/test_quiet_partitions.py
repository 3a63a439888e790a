"""Case 2 of the real world: a source that always arrives ~50 s late, with quiet spells. Its in-order events
stay on time after a quiet spell, the quiet partition still closes its windows, and `pulse verify` reproduces
the wall-clock decision (a straggler behind the recorded floor is a correction in both), across a SIGKILL and
restart."""

from __future__ import annotations

import signal
import time

from elasticsearch import Elasticsearch

from pulse.aggregate.decisions import read_decisions
from tests.aggregate.harness import read_latest_docs, run_store, start_aggregator
from tests.cli_helpers import run_pulse
from tests.names import unique
from tests.realworld.plain import count_records, event, now_ms, produce

DELAY_MS = 50_000
FLAGS = ("--grace", "10s", "--idle-timeout", "2")


def _burst(bootstrap: str, topic: str, first: int, n: int = 100) -> list[dict]:
    """``n`` in-order events that happened DELAY_MS ago."""
    base = now_ms() - DELAY_MS
    events = [event(first + i, base + 5 * i) for i in range(n)]
    produce(bootstrap, topic, events, key=lambda e: e["user_id"])
    return events


def _wait_for_decisions(bootstrap: str, group: str, topic: str, count: int, timeout: float = 40) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # the first decision of a quiet spell may only say the partition is idle: the floors close windows
        found = [d for d in read_decisions(bootstrap, group, topic).get(0, []) if d.floor is not None]
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise AssertionError(f"the quiet partition recorded {len(found)} decisions, not {count}")


def test_a_delayed_source_with_quiet_spells_is_never_late_and_verify_reproduces_the_idle_closes(
        bootstrap, es_url, new_topic, index_prefix, tmp_path) -> None:
    topic, group = new_topic(partitions=1, prefix="quiet"), unique("g")
    log = tmp_path / "agg.log"
    first = _burst(bootstrap, topic, 0)
    agg = start_aggregator(topic, group, *FLAGS, log=log)
    try:
        # quiet: the partition's event time goes on from its last event, so its 10 s windows close in time
        decided = _wait_for_decisions(bootstrap, group, topic, 1)
        assert decided[0].floor <= decided[0].clock - 10_000
        last_ts = first[-1]["ts"]
        assert decided[0].floor > last_ts - 10_000  # the window holding the last event closed
        time.sleep(3)  # a little more quiet (a few seconds more of a ~50 s delay)
        # a straggler behind the recorded floor is a correction; the source's next in-order events are on time
        produce(bootstrap, topic, [event(999, decided[0].floor - 1)], key=lambda e: e["user_id"])
        _burst(bootstrap, topic, 100)
        time.sleep(3)
        agg.send_signal(signal.SIGKILL)
        agg.wait(30)
        agg = start_aggregator(topic, group, *FLAGS, log=log)
        _wait_for_decisions(bootstrap, group, topic, 2)  # after the restart, another quiet spell closes windows
        _burst(bootstrap, topic, 200)
        time.sleep(4)
    finally:
        agg.send_signal(signal.SIGINT)
        assert agg.wait(60) == 0, log.read_text()[-3000:]

    partition = read_latest_docs(bootstrap, f"{group}.aggregates")["partition:0"]
    assert (partition["accepted"], partition["corrected"], partition["late"]) == (300, 1, 0), partition
    assert count_records(bootstrap, f"{topic}.late") == 0
    finals = [d for i, d in read_latest_docs(bootstrap, f"{group}.aggregates").items()
              if i.startswith("window:10s:") and d["end"] <= decided[0].floor]
    assert finals and all(d["final"] for d in finals)
    run_store(topic, group, index_prefix)
    Elasticsearch(es_url).indices.refresh(index=f"{index_prefix}-*")
    ok = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix, "--grace", "10s")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 corrected" in ok.stdout
