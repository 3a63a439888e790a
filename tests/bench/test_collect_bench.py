"""`pulse bench collect` at a small size: the collector takes every batch it is sent, and the topic holds exactly
the events the benchmark generated."""

from __future__ import annotations

from pulse.bench import collect
from pulse.config import Settings
from pulse.kafkaio import read_range
from tests.names import unique


def test_every_event_sent_through_http_is_in_the_topic_once(settings: Settings) -> None:
    batches = collect.bodies(3000)
    assert len(batches) == 30
    c = collect.Collector(settings, 2, unique("bench-collect"))
    try:
        done = collect.throughput(c.url, batches)
        paced = collect.latency(c.url, batches[:5], 2000)  # sent again: answered duplicate, not written
    finally:
        c.stop()
    assert done.events == 3000 and done.rate > 0
    assert paced.answered == 500 and 0 < paced.p50_ms <= paced.p99_ms
    assert sum(1 for p in range(2) for _ in read_range(settings.bootstrap, c.topic, p, 0)) == 3000
