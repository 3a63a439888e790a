"""`pulse archive` and the heartbeat against the real broker and node."""

from __future__ import annotations

from pathlib import Path

from elasticsearch import Elasticsearch

from pulse.aggregate.config import StateConfig
from pulse.connect.elasticsearch import EsConnection
from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.kafkaio import read_range
from pulse.store.archive import ArchiveConfig, ArchiveWriter
from pulse.store.indices import alias, ensure_indices, heartbeat_index
from pulse.verify.reference import recompute
from pulse.verify.source import topic_rows
from tests.aggregate.harness import CHAOS, generate, run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.names import unique


def _count(es: Elasticsearch, index: str) -> int:
    es.indices.refresh(index=index)
    return es.count(index=index)["count"]


def test_archive_holds_each_event_once_and_every_dead_letter_and_late_event(
        bootstrap, es_url, new_topic, index_prefix, tmp_path: Path) -> None:
    topic, group = new_topic(partitions=3, prefix="arc"), unique("g")
    generate(topic, tmp_path / "l.gz", 6_000, "--rate", "0", *CHAOS)
    run_aggregator_until_idle(topic, group)
    done = run_pulse("archive", "--topic", topic, "--index-prefix", index_prefix, "--exit-when-idle", "3")
    assert done.returncode == 0, done.stderr
    es = Elasticsearch(es_url)

    rows = topic_rows(bootstrap, topic)
    valid_ids = {e.event_id for _p, _o, v, ts in rows if isinstance(e := validate(v or b"", ts), Event)}
    expected = recompute(rows, [10_000], StateConfig.grace_ms, StateConfig.correct_within_ms)
    assert expected.dead_lettered > 0 and expected.late > 0
    assert _count(es, alias("events", index_prefix)) == len(valid_ids)  # duplicates collapse on event_id
    assert _count(es, alias("deadletter", index_prefix)) == expected.dead_lettered
    late_ids = {validate(v, 2**62).event_id for p in range(3)  # type: ignore[union-attr]
                for _o, _k, v, _ts in read_range(bootstrap, f"{topic}.late", p, 0)}
    assert _count(es, alias("late", index_prefix)) == len(late_ids)

    reasons = es.search(index=alias("deadletter", index_prefix), size=0,
                        aggs={"r": {"terms": {"field": "reason", "size": 20}}})["aggregations"]["r"]["buckets"]
    assert sum(b["doc_count"] for b in reasons) == expected.dead_lettered and len(reasons) >= 3
    one = es.search(index=alias("events", index_prefix), size=1)["hits"]["hits"][0]
    assert one["_id"] == one["_source"]["event_id"]

    again = run_pulse("archive", "--topic", topic, "--index-prefix", index_prefix, "--exit-when-idle", "2")
    assert again.returncode == 0  # a re-run (new records only) changes nothing
    assert _count(es, alias("events", index_prefix)) == len(valid_ids)
    beat = es.get(index=heartbeat_index(index_prefix), id=f"archive:{topic}")["_source"]
    assert beat["store_lag"] == 0


def test_archive_deletes_days_past_retention(bootstrap, es_url, new_topic, index_prefix) -> None:
    es = Elasticsearch(es_url)
    ensure_indices(es, index_prefix)
    old, today = f"{index_prefix}-events-2020.01.01", f"{index_prefix}-late-2099.01.01"
    for index in (old, today):
        es.index(index=index, id="x", document={"event_id": "x"}, refresh=True)
    assert _count(es, alias("events", index_prefix)) == 1  # the template put the daily index behind the alias
    writer = ArchiveWriter(ArchiveConfig(bootstrap=bootstrap, es=EsConnection((es_url,)), topic=new_topic(),
                                         retention_days=30, index_prefix=index_prefix))
    assert writer.delete_expired() == [old]
    assert not es.indices.exists(index=old) and es.indices.exists(index=today)


def test_heartbeat_reports_lag_and_freshness(bootstrap, es_url, new_topic, index_prefix, tmp_path: Path) -> None:
    topic, group = new_topic(partitions=2, prefix="hb"), unique("g")
    generate(topic, tmp_path / "a.gz", 2_000, "--rate", "0")
    run_aggregator_until_idle(topic, group)
    generate(topic, tmp_path / "b.gz", 700, "--rate", "0", seed=3)  # not aggregated yet: lag
    run_store(topic, group, index_prefix)
    es = Elasticsearch(es_url)
    beat = es.get(index=heartbeat_index(index_prefix), id=f"store:{group}")["_source"]
    assert beat["aggregator_lag"] == 700
    assert beat["store_lag"] == 0
    newest_flush = max(d["_source"]["flushed_at"] for d in es.search(
        index=alias("partitions", index_prefix), size=10)["hits"]["hits"])
    assert beat["newest_flush_at"] == newest_flush and beat["at"] >= newest_flush
