"""`pulse generate --via URL`: the same traffic through the collector as straight to Kafka. The reference is the
same seed's run produced directly: its valid events, by id, are what the collector must have written."""

from __future__ import annotations

import os
import time

from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.topics import dead_letter_topic, ensure_topics, input_topics
from tests.cli_helpers import one_line_error, run_pulse
from tests.collect.test_collect_kafka import PARTITIONS, read_all, start, stop
from tests.names import unique

TRAFFIC = ("--count", "3000", "--rate", "0", "--seed", "5", "--duplicate-fraction", "0.05",
           "--invalid-fraction", "0.03", "--no-progress")


def test_traffic_through_the_collector_lands_as_produced_straight(bootstrap: str) -> None:
    direct, via = unique("via-direct"), unique("via")
    for topic in (direct, via):
        ensure_topics(bootstrap, input_topics(topic, PARTITIONS))
    straight = run_pulse("generate", "--topic", direct, *TRAFFIC)
    assert straight.returncode == 0, straight.stderr
    c = start(via, {"PULSE_COLLECT_KEYS": "generator-key-1"})
    try:
        sent = run_pulse("generate", "--via", c.url, "--via-key", "generator-key-1", *TRAFFIC,
                         env=dict(os.environ) | {"PULSE_TOPIC": "unused"})
    finally:
        stop(c)
    assert sent.returncode == 0, sent.stderr

    def valid_ids(topic: str) -> list[str]:
        now = int(time.time() * 1000)  # about when the broker stamped them: far-future events are invalid
        events = [validate(v, now) for *_, v, _ in read_all(bootstrap, topic)]
        return [e.event_id for e in events if isinstance(e, Event)]

    expected, written = set(valid_ids(direct)), valid_ids(via)
    assert len(expected) > 2500 and set(written) == expected
    assert len(written) == len(expected)  # the generator's duplicates were answered duplicate, not written again
    letters = read_all(bootstrap, dead_letter_topic(via))
    assert letters and all(h["pulse.source.topic"] == b"collector" for *_, h in letters)
    assert all(not isinstance(validate(v, int(time.time() * 1000)), Event) for *_, v, _ in letters)


def test_via_refuses_what_only_kafka_producers_do() -> None:
    refused = run_pulse("generate", "--via", "http://127.0.0.1:9", "--count", "10", "--null-key-fraction", "0.5")
    assert refused.returncode == 2 and "--via sends through the collector" in refused.stderr
    gone = run_pulse("generate", "--via", "http://127.0.0.1:9/", "--count", "10", "--rate", "0", timeout=60)
    assert "cannot reach the collector at http://127.0.0.1:9" in one_line_error(gone)
