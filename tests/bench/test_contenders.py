"""Every `pulse bench aggregate` contender (Quix Streams included) runs as the benchmark starts it and is timed
until its output is committed (real broker and node): a contender that crashes or never commits would make the
benchmark's figures fiction."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer
from elasticsearch import Elasticsearch

from pulse.aggregate.config import StateConfig
from pulse.bench import aggregate as agg
from pulse.bench import flink
from pulse.bench.scratch import scratch
from pulse.config import Settings


def test_each_contender_reads_the_topic_to_its_end_and_commits(settings: Settings, tmp_path: Path) -> None:
    count = 3_000
    with scratch(settings):  # deletes the topics, changelogs and the naive design's index it creates
        topic = f"pulse.bench.contenders-{int(time.time() * 1000)}"
        ends = agg.prepare_input(settings, topic, count, 3)
        assert sum(ends.values()) == count
        assert sum(agg.prepare_input(settings, agg.unkeyed_topic(topic), count, 3, null_keys=1.0).values()) == count
        assert sum(agg.prepare_input(settings, agg.crc32_topic(topic), count, 3, crc32_keys=1.0).values()) == count
        log = tmp_path / "contenders.log"
        es = Elasticsearch(settings.es_url)
        quix = agg.quix_python(settings)  # its own virtualenv, installed once per Pulse home
        flink_cp = flink.classpath(settings)  # Flink's jars, resolved once per Pulse home; the job compiled once
        names = ["raw", "naive", "pulse", "unkeyed", "crc32", "quix", "flink"]
        every = agg.contenders(settings, topic, names, quix, flink_cp)
        assert [c.key for c in every] == names
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
        # Flink's day windows hold every event it accepted: near the input count (less dead letters, duplicates)
        day = max(StateConfig().window_sizes)
        flink_group = next(c for c in every if c.key == "flink").group
        counted = sum(sum(doc["counts"].values()) for doc in _committed(settings, flink.output_topic(flink_group))
                      if doc["kind"] == "window" and doc["window_ms"] == day)
        assert 0.95 * count <= counted <= count


def _committed(settings: Settings, topic: str) -> list[dict]:
    """Every committed record of ``topic`` (read_committed: an aborted transaction's records are not output)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"check-{time.time()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    out, idle = [], 0
    while idle < 3:
        batch = consumer.consume(1000, 1.0)
        idle = 0 if batch else idle + 1
        out.extend(orjson.loads(m.value()) for m in batch if m.error() is None)
    consumer.close()
    return out
