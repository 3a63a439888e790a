"""Every `pulse bench aggregate` contender (Quix Streams included) runs as the benchmark starts it and is timed
until its output is committed (real broker and node): a contender that crashes or never commits would make the
benchmark's figures fiction."""

from __future__ import annotations

import os
import time
from pathlib import Path

from elasticsearch import Elasticsearch

from pulse.bench import aggregate as agg
from pulse.bench.scratch import scratch
from pulse.config import Settings


def test_each_contender_reads_the_topic_to_its_end_and_commits(settings: Settings, tmp_path: Path) -> None:
    count = 3_000
    with scratch(settings):  # deletes the topics, changelogs and the naive design's index it creates
        topic = f"pulse.bench.contenders-{int(time.time() * 1000)}"
        ends = agg.prepare_input(settings, topic, count, 3)
        assert sum(ends.values()) == count
        assert sum(agg.prepare_input(settings, agg.unkeyed_topic(topic), count, 3, null_keys=1.0).values()) == count
        log = tmp_path / "contenders.log"
        es = Elasticsearch(settings.es_url)
        quix = agg.quix_python(settings)  # its own virtualenv, installed once per Pulse home
        every = agg.contenders(settings, topic, ["raw", "naive", "pulse", "unkeyed", "quix"], quix)
        assert [c.key for c in every] == ["raw", "naive", "pulse", "unkeyed", "quix"]
        for contender in every:
            result = agg.measure(settings, contender, topic, ends, 120, log)
            assert result.events == count
            assert 0 < result.seconds < 120, (contender.name, log.read_text()[-2000:])
            # its CPU up to the commit: at least the interpreter's start, at most every core for the whole time
            assert 0.01 < result.cpu <= result.seconds * (os.cpu_count() or 1) + 0.05, (contender.name, result)
            if contender.index is not None:  # the naive design's index of every event goes as soon as it is timed
                assert not es.indices.exists(index=contender.index)
        agg.cleanup(settings)
        assert "Traceback" not in log.read_text()
