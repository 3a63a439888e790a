"""Case 3 of the real world: one producer whose clock is 300 days fast (event time and record timestamp), and
one a couple of minutes fast. The broker stamps the records (LogAppendTime, as `pulse setup` makes the topic):
the far one is dead-lettered as `future_timestamp`, the near one counts in its window, and neither makes the
partition's on-time events late."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from pulse.topics import timestamp_type
from tests.aggregate.harness import read_latest_docs, run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.names import unique
from tests.realworld.plain import count_records, event, headers_of, now_ms, produce

DAY_MS = 86_400_000


def test_a_fast_clock_cannot_darken_a_partition(bootstrap, es_url, new_topic, index_prefix) -> None:
    topic, group = unique("clocks"), unique("g")
    made = run_pulse("setup", "--topic", topic, "--partitions", "1")
    assert made.returncode == 0, made.stderr
    assert timestamp_type(bootstrap, topic) == "LogAppendTime"
    now = now_ms()
    before = [event(n, now - 20_000 + n) for n in range(200)]
    far = event(500, now + 300 * DAY_MS)
    near = event(501, now + 120_000)  # within the contract's five minutes: accepted into its own window
    after = [event(1000 + n, now - 10_000 + n) for n in range(200)]  # on time, 10 s old: not late
    produce(bootstrap, topic, [*before, far], key=lambda e: e["user_id"], timestamp=lambda e: e["ts"])
    produce(bootstrap, topic, [near, *after], key=lambda e: e["user_id"], timestamp=lambda e: e["ts"])
    run_aggregator_until_idle(topic, group)

    partition = read_latest_docs(bootstrap, f"{group}.aggregates")["partition:0"]
    assert (partition["accepted"], partition["dead_lettered"], partition["late"]) == (401, 1, 0), partition
    assert headers_of(bootstrap, f"{topic}.dlq", "pulse.reason") == ["future_timestamp"]
    assert partition["max_event_ts"] < now + 60_000  # the event clock stayed with the broker's
    run_store(topic, group, index_prefix)
    Elasticsearch(es_url).indices.refresh(index=f"{index_prefix}-*")
    ok = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert count_records(bootstrap, f"{topic}.late") == 0


def test_setup_switches_an_existing_topic_to_the_brokers_clock(bootstrap, new_topic) -> None:
    topic = new_topic(partitions=6, prefix="oldtopic")
    assert timestamp_type(bootstrap, topic) == "CreateTime"
    done = run_pulse("setup", "--topic", topic)
    assert done.returncode == 0, done.stderr
    assert "altered: message.timestamp.type=LogAppendTime" in done.stdout
    assert timestamp_type(bootstrap, topic) == "LogAppendTime"
