"""Elasticsearch as an idempotent, versioned projection, against the real node; `pulse verify` as the proof."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch

from pulse.connect.elasticsearch import EsConnection
from pulse.kafkaio import read_range
from pulse.store import query
from pulse.store.bulk import BulkOp
from pulse.store.indices import alias, ensure_indices
from pulse.store.writer import ElasticsearchWriter, WriterConfig
from tests.aggregate.harness import CHAOS, generate, run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.names import unique


@pytest.fixture
def prefix(index_prefix: str) -> str:
    return index_prefix


def test_end_to_end_equals_independent_recompute_and_tampering_is_caught(
        bootstrap, es_url, new_topic, prefix, tmp_path: Path) -> None:
    topic, group = new_topic(partitions=6, prefix="st"), unique("g")
    generate(topic, tmp_path / "l.gz", 30_000, "--rate", "0", *CHAOS)
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, prefix)
    es = Elasticsearch(es_url)
    es.indices.refresh(index=f"{prefix}-*")

    ok = run_pulse("verify", "--topic", topic, "--index-prefix", prefix)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: Elasticsearch equals the independent recompute" in ok.stdout
    from_ledger = run_pulse("verify", "--ledger", str(tmp_path / "l.gz"), "--index-prefix", prefix)
    assert from_ledger.returncode == 0, from_ledger.stderr

    # rates are over the span the data covers (the last two minutes or so here), not the whole 15-minute range
    now = int(time.time() * 1000)
    kpis = query.overview(es, query.Filters(now - 900_000, now + 1), prefix)["kpis"]
    assert 20 <= kpis["rate_span_s"] <= 300, kpis
    assert kpis["events_per_s"] == kpis["events"] / kpis["rate_span_s"] > kpis["events"] / 900 * 3

    # tamper: one window summary gets an extra view (a newer version, as a buggy writer would do)
    own = {"bool": {"filter": [{"term": {"kind": "window"}}], "must_not": [{"exists": {"field": "revision"}}]}}
    hit = es.search(index=alias("windows", prefix), size=1, query=own)["hits"]["hits"][0]
    doc = hit["_source"] | {"counts": hit["_source"]["counts"] | {"view": hit["_source"]["counts"]["view"] + 1}}
    es.index(index=alias("windows", prefix), id=hit["_id"], document=doc, version=doc["version"] + 1,
             version_type="external", refresh=True)
    bad = run_pulse("verify", "--topic", topic, "--index-prefix", prefix)
    assert bad.returncode == 1
    assert f"{hit['_id']}.counts" in bad.stderr
    # and a lost document is reported as missing
    victim = es.search(index=alias("users", prefix), size=1)["hits"]["hits"][0]["_id"]
    es.delete(index=alias("users", prefix), id=victim, refresh=True)
    gone = run_pulse("verify", "--topic", topic, "--index-prefix", prefix)
    assert gone.returncode == 1 and f"missing {victim}" in gone.stderr
    # and a document no input made, in a window range the streamed diff reads, is reported as extra
    stray = hit["_source"] | {"start": 0, "end": 10_000, "version": 1}
    stray_id = f"window:{stray['window']}:0:p{stray['partition']}"
    es.index(index=alias("windows", prefix), id=stray_id, document=stray, refresh=True)
    extra = run_pulse("verify", "--topic", topic, "--index-prefix", prefix, "--json")
    report = json.loads(extra.stdout)
    assert extra.returncode == 1 and report["documents"]["extra"] == 1 and report["documents"]["missing"] == 1
    assert f"extra {stray_id}" in report["examples"] and report["input_records"] == 30_000
    _interrupted_verify_stops_with_its_workers(topic, prefix)


def _interrupted_verify_stops_with_its_workers(topic: str, prefix: str) -> None:
    """Ctrl-C while the workers walk the partitions: one line, exit 130, and no worker left behind."""
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "verify", "--topic", topic, "--index-prefix", prefix],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        workers = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        time.sleep(0.05)
    assert len(workers) >= 2, "verify finished before its workers were seen"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "pulse: interrupted" in err
    time.sleep(1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text()]


def _writer(bootstrap: str, es_url: str, prefix: str) -> ElasticsearchWriter:
    ensure_indices(Elasticsearch(es_url), prefix)
    return ElasticsearchWriter(WriterConfig(bootstrap=bootstrap, es=EsConnection((es_url,)), group=unique("g", 6),
                                            index_prefix=prefix))


def _bulk(writer: ElasticsearchWriter) -> list[BulkOp]:
    """Send what the writer has pending as one bulk request; returns the ops it would retry."""
    ops = [BulkOp(index, doc_id, source, version) for doc_id, (version, index, source) in writer._pending.items()]
    writer._pending.clear()
    return writer._sink._bulk(ops)


def test_an_older_version_never_overwrites_a_newer_one(bootstrap, es_url, prefix) -> None:
    writer = _writer(bootstrap, es_url, prefix)
    newer = {"kind": "user", "user_id": "u1", "partition": 0, "first_seen": 1, "last_seen": 9, "counts": {"view": 7},
             "spent_cents": 0, "purchases": 0, "last_item": None, "version": 10}
    older = newer | {"counts": {"view": 3}, "version": 5}
    writer._add("user:u1", orjson.dumps(newer))
    _bulk(writer)
    writer._add("user:u1", orjson.dumps(older))
    retry = _bulk(writer)
    assert retry == [] and writer.stats.stale == 1
    same = newer | {"counts": {"view": 7}}  # an equal version (a replay) is accepted and changes nothing
    writer._add("user:u1", orjson.dumps(same))
    _bulk(writer)
    got = Elasticsearch(es_url).get(index=alias("users", prefix), id="user:u1")
    assert got["_source"]["counts"] == {"view": 7} and got["_version"] == 10


def test_a_mapping_error_goes_to_the_dead_letter_path(bootstrap, es_url, prefix) -> None:
    writer = _writer(bootstrap, es_url, prefix)
    row = {"item_id": "i1", "category": "books", "counts": {"view": 1}, "revenue_cents": 0, "purchases": 0}
    good = {"kind": "items", "partition": 0, "shard": 1, "items": [row], "version": 1}
    bad = good | {"shard": 2, "items": [row | {"surprise": "field"}]}  # strict mapping refuses it
    writer._add("items:s1:p0", orjson.dumps(good))
    writer._add("items:s2:p0", orjson.dumps(bad))
    assert _bulk(writer) == []
    writer._sink.close()
    assert writer.stats.dead_lettered == 1 and writer.stats.writes == 1
    dead = list(read_range(bootstrap, writer.cfg.dlq_topic, 0, 0))
    assert len(dead) == 1 and dead[0][1] == b"items:s2:p0" and b"surprise" in dead[0][2]
