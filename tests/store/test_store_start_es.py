"""A store that starts while one of Pulse's indices has no started primary shard (another process created it a
moment before, or Elasticsearch is still recovering it after a restart) waits for it and then writes everything;
if it never comes, the store ends with one line that says so. Reads of such an index answer 503."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch

from pulse.kafkaio import end_offsets
from pulse.store.indices import meta_index
from pulse.topics import aggregates_topic, store_group
from tests.aggregate.harness import generate, run_aggregator_until_idle
from tests.live import Stage, wait_for
from tests.names import unique
from tests.store.test_store_aborted_es import _committed

NOWHERE = "index.routing.allocation.require._name"


def _unstarted_meta_index(es: Elasticsearch, prefix: str) -> None:
    """The metadata index with its primary shard held unassigned: as reads find it between another process's
    create and the shard's start."""
    es.indices.create(index=meta_index(prefix), wait_for_active_shards="0",
                      settings={"number_of_shards": 1, "number_of_replicas": 0, NOWHERE: "no-such-node"})


def test_a_store_waits_for_an_index_whose_shard_has_not_started_then_writes_everything(
        bootstrap, es_url, new_topic, index_prefix, tmp_path: Path, stages: list[Stage]) -> None:
    topic, group = new_topic(partitions=2, prefix="ss"), unique("g")
    generate(topic, tmp_path / "l.gz", 2_000, "--rate", "0")
    run_aggregator_until_idle(topic, group)
    es = Elasticsearch(es_url)
    _unstarted_meta_index(es, index_prefix)

    store = Stage(tmp_path / "store.log", "store", "--topic", topic, "--group", group, "--index-prefix",
                  index_prefix, "--exit-when-idle", "1.5")
    stages.append(store)
    wait_for(lambda: "waiting up to 60 s for Pulse's indices to be ready (red now)" in store.text(), 60,
             "the store waiting for the index", store.text)
    time.sleep(2)
    assert store.proc.poll() is None, store.text()[-3000:]  # waiting, not ended
    es.indices.put_settings(index=meta_index(index_prefix), settings={NOWHERE: None})
    assert store.proc.wait(120) == 0, store.text()[-3000:]
    source = aggregates_topic(group)
    ends = end_offsets(AdminClient({"bootstrap.servers": bootstrap}), source, [0, 1])
    assert _committed(bootstrap, store_group(group), source, [0, 1]) == ends
    written = es.get(index=meta_index(index_prefix), id=f"source:{topic}")["_source"]
    assert written["topic"] == topic and written["topic_id"]


def test_a_store_whose_index_never_starts_ends_with_one_line(es_url, new_topic, index_prefix) -> None:
    topic, group = new_topic(partitions=1, prefix="ss"), unique("g")
    _unstarted_meta_index(Elasticsearch(es_url), index_prefix)
    store = subprocess.run([sys.executable, "-m", "pulse", "store", "--topic", topic, "--group", group,
                            "--index-prefix", index_prefix, "--es-patience", "3s"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL, check=False)
    out = store.stdout + store.stderr
    assert store.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "pulse: error: Pulse's indices (" in out and meta_index(index_prefix) in out, out[-3000:]
    assert re.search(r"are red, not ready after [1-3] s", out), out[-3000:]
