"""`pulse replay` (rebuild + alias swap) and the re-created topic guard, against the real broker and node."""

from __future__ import annotations

import json
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic
from elasticsearch import Elasticsearch

from pulse.kafkaio import read_range
from pulse.store.indices import alias
from pulse.store.query import all_documents
from pulse.verify import revisions
from tests.aggregate.harness import (
    CHAOS,
    generate,
    run_aggregator_until_idle,
    run_store,
    start_aggregator,
)
from tests.cli_helpers import one_line_error, run_pulse
from tests.names import unique


def _generation(es: Elasticsearch, prefix: str) -> list[str]:
    return sorted(es.indices.get_alias(name=alias("windows", prefix)))


def test_replay_rebuilds_new_indices_and_swaps_aliases(bootstrap, es_url, new_topic, index_prefix,
                                                       tmp_path: Path) -> None:
    topic, group = new_topic(partitions=3, prefix="rp"), unique("g")
    generate(topic, tmp_path / "a.gz", 8_000, "--rate", "0", *CHAOS)
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, index_prefix)
    es = Elasticsearch(es_url)
    assert _generation(es, index_prefix) == [f"{index_prefix}-windows-000001"]

    full = run_pulse("replay", "--from", "0", "--topic", topic, "--group", group, "--index-prefix", index_prefix)
    assert full.returncode == 0, full.stderr
    assert _generation(es, index_prefix) == [f"{index_prefix}-windows-000002"]
    assert not es.indices.exists(index=f"{index_prefix}-windows-000001")
    ok = run_pulse("verify", "--topic", topic, "--index-prefix", index_prefix)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # from the middle of the topic: the new generation holds exactly what that part of the input yields
    mid = [ts for _o, _k, _v, ts in read_range(bootstrap, topic, 0, 0)][1_500]
    part = run_pulse("replay", "--from", str(mid), "--topic", topic, "--group", group, "--index-prefix",
                     index_prefix, "--keep-old")
    assert part.returncode == 0, part.stderr
    assert _generation(es, index_prefix) == [f"{index_prefix}-windows-000003"]
    assert es.indices.exists(index=f"{index_prefix}-windows-000002")  # --keep-old
    since = run_pulse("verify", "--topic", topic, "--index-prefix", index_prefix, "--from", str(mid))
    assert since.returncode == 0, since.stdout + since.stderr
    # without --from, verify walks from where the replayed aggregates began (recorded beside them), not from the
    # topic's start, whose early part the new generation rightly does not hold
    whole = run_pulse("verify", "--topic", topic, "--index-prefix", index_prefix, "--json")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert 0 < json.loads(whole.stdout)["input_records"] < 8_000

    # the normal pipeline continues on top of the replayed state
    generate(topic, tmp_path / "b.gz", 2_000, "--rate", "0", seed=9)
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, index_prefix)
    after = run_pulse("verify", "--topic", topic, "--index-prefix", index_prefix, "--from", str(mid))
    assert after.returncode == 0, after.stdout + after.stderr


def test_recreated_topic_is_refused_until_replayed(bootstrap, es_url, index_prefix, tmp_path: Path) -> None:
    topic, group = unique("rc"), unique("g")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    try:
        generate(topic, tmp_path / "a.gz", 1_000, "--rate", "0")
        run_aggregator_until_idle(topic, group)
        run_store(topic, group, index_prefix)

        admin.delete_topics([topic])[topic].result(30)
        for _ in range(60):
            try:
                admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
                break
            except Exception:  # still being deleted
                time.sleep(0.5)
        generate(topic, tmp_path / "b.gz", 500, "--rate", "0", seed=2)
        refused = run_pulse("store", "--topic", topic, "--group", group, "--index-prefix", index_prefix,
                            "--exit-when-idle", "1")
        assert refused.returncode == 1
        assert "was re-created" in one_line_error(refused) and "pulse replay" in refused.stderr

        fixed = run_pulse("replay", "--from", "0", "--topic", topic, "--group", group, "--index-prefix",
                          index_prefix)
        assert fixed.returncode == 0, fixed.stderr
        ok = run_pulse("verify", "--topic", topic, "--index-prefix", index_prefix)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        run_store(topic, group, index_prefix)  # accepted again
    finally:
        for name in (topic, f"{topic}.dlq", f"{topic}.late", f"{group}.changelog", f"{group}.aggregates"):
            admin.delete_topics([name])


POSITIONAL = {"version", "flushed_at", "repartition_offset", "next_offset", "watermark", "final", "revision"}


def _comparable(es: Elasticsearch, prefix: str) -> dict[str, dict]:
    """Every document without what depends on where flushes fell: positions, the cut of corrections into
    revisions (summed per window document), and the funnels of revisions (:func:`revisions.arrival_free`)."""
    docs = revisions.arrival_free(revisions.summed(all_documents(es, prefix)))
    return {i: {k: v for k, v in d.items() if k not in POSITIONAL} for i, d in docs.items()}


def test_replay_of_a_null_keyed_topic_equals_the_live_run(bootstrap, es_url, new_topic, index_prefix,
                                                          tmp_path: Path) -> None:
    """Input without keys, aggregated live as it is produced, then rebuilt by `pulse replay` from the topic as a
    backlog (every partition read long before the records others forward): the same documents, and exact."""
    topic, group = new_topic(partitions=3, prefix="rpn"), unique("g")
    # it exits once idle for 10 s: longer than the generator takes to start, so it sees the input live
    live = start_aggregator(topic, group, "--exit-when-idle", "10", log=tmp_path / "live.log")
    time.sleep(3)  # joined
    generate(topic, tmp_path / "a.gz", 6_000, "--rate", "1500", "--null-key-fraction", "0.9", *CHAOS)
    assert live.wait(120) == 0, (tmp_path / "live.log").read_text()[-3000:]
    run_store(topic, group, index_prefix)
    es = Elasticsearch(es_url)
    es.indices.refresh(index=f"{index_prefix}-*")
    before = _comparable(es, index_prefix)
    assert any(d.get("forwarded") for d in before.values())

    rebuilt = run_pulse("replay", "--from", "0", "--topic", topic, "--group", group, "--index-prefix", index_prefix)
    assert rebuilt.returncode == 0, rebuilt.stderr
    es.indices.refresh(index=f"{index_prefix}-*")
    after = _comparable(es, index_prefix)
    differ = sorted(i for i in before.keys() | after.keys() if before.get(i) != after.get(i))
    assert not differ, [(i, before.get(i), after.get(i)) for i in differ[:3]]
    ok = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix)
    assert ok.returncode == 0, ok.stdout + ok.stderr
