"""Every `pulse bench aggregate` contender runs as the benchmark starts it and is timed to its last commit
(real broker and node): a contender that crashes or never commits would make the benchmark's figures fiction."""

from __future__ import annotations

import time
from pathlib import Path

from elasticsearch import Elasticsearch

from pulse.bench import aggregate as agg
from pulse.bench.scratch import scratch
from pulse.config import Settings
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.producer import EventProducer, RunLimits
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.topics import ensure_topics, input_topics


def test_raw_naive_and_pulse_each_read_the_topic_to_its_end_and_commit(settings: Settings, tmp_path: Path) -> None:
    count = 3_000
    with scratch(settings):  # deletes the topics, changelogs and the naive design's index it creates
        topic = f"pulse.bench.contenders-{int(time.time() * 1000)}"
        ensure_topics(settings.bootstrap, input_topics(topic, 3, 1))
        traffic = Traffic(TrafficConfig(seed=11, start_ms=int(time.time() * 1000) - 120_000))
        EventProducer(settings.bootstrap, topic, 3).run(Chaos(traffic, ChaosConfig(0.01, 0.01, 0.01, 0.01)),
                                                        RunLimits(count=count), lambda: 0.0)
        ends = agg.end_offsets(settings, topic)
        assert sum(ends.values()) == count
        log = tmp_path / "contenders.log"
        es = Elasticsearch(settings.es_url)
        for contender in agg.contenders(settings, topic, ["raw", "naive", "pulse"], None):
            result = agg.measure(settings, contender, topic, ends, 120, log)
            assert result.events == count
            assert 0 < result.seconds < 120, (contender.name, log.read_text()[-2000:])
            if contender.index is not None:  # the naive design's index of every event goes as soon as it is timed
                assert not es.indices.exists(index=contender.index)
        assert "Traceback" not in log.read_text()
