"""`pulse verify --from/--to` on a real pipeline's output: a range is exact with the state before it rebuilt from a
lead-in (the walk reads far less than the whole input), catches a document altered inside it and leaves the ones
outside it alone; the users it cannot check are left out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from pulse.store.indices import alias
from tests.aggregate.harness import CHAOS, generate, run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.names import unique

MINUTE = 60_000
COUNT = 40_000


def _verify(topic: str, group: str, prefix: str, *extra: str) -> tuple[int, dict[str, Any]]:
    done = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", prefix, "--json", *extra)
    assert done.stdout.strip(), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def _window(es: Elasticsearch, prefix: str, start: dict[str, int]) -> dict[str, Any]:
    # a window's own document, not one of its revisions (verify compares those summed, under another id)
    query = {"bool": {"filter": [{"term": {"kind": "window"}}, {"term": {"window": "10s"}},
                                 {"range": {"start": start}}],
                      "must_not": [{"exists": {"field": "revision"}}]}}
    return es.search(index=alias("windows", prefix), size=1, query=query, sort=[{"start": "asc"}])["hits"]["hits"][0]


def _alter(es: Elasticsearch, prefix: str, hit: dict[str, Any]) -> None:
    doc = hit["_source"] | {"events": hit["_source"]["events"] + 7}
    es.index(index=alias("windows", prefix), id=hit["_id"], document=doc, version=doc["version"] + 1,
             version_type="external", refresh=True)


def test_a_range_is_exact_reads_only_its_lead_in_and_catches_what_changed_inside_it(
        new_topic: Callable[..., str], es_url: str, index_prefix: str, tmp_path: Path) -> None:
    # a backfill: record times (the producer's, CreateTime) follow event times over 80 minutes
    topic, group = new_topic(partitions=4, prefix="rg"), unique("g")
    first = (int(time.time() * 1000) - 100 * MINUTE) // MINUTE * MINUTE
    generate(topic, tmp_path / "l.gz", COUNT, "--rate", "0", "--event-rate", "8", "--start", str(first), *CHAOS)
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, index_prefix)
    es = Elasticsearch(es_url)
    es.indices.refresh(index=f"{index_prefix}-*")

    since = first + 60 * MINUTE
    code, report = _verify(topic, group, index_prefix, "--from", str(since))
    assert code == 0, report
    assert report["range"]["windows_from"] == since and report["range"]["users_items_counters"] is False
    # the lead-in (the session timeout and five minutes of possible clock skew) is read, not the hour before
    assert 0 < report["input_records"] < COUNT * 0.75
    assert report["documents"]["by_kind"].get("user", 0) == 0 and report["documents"]["checked"] > 1000

    until = since + 10 * MINUTE
    code, bounded = _verify(topic, group, index_prefix, "--from", str(since), "--to", str(until))
    assert code == 0, bounded
    assert bounded["range"]["compared_up_to"] == until
    assert bounded["input_records"] < report["input_records"] and bounded["documents"]["checked"] > 200

    inside, outside = _window(es, index_prefix, {"gte": since}), _window(es, index_prefix, {"lt": since - MINUTE})
    _alter(es, index_prefix, inside)
    _alter(es, index_prefix, outside)
    code, caught = _verify(topic, group, index_prefix, "--from", str(since))
    assert code == 1 and caught["documents"]["mismatched"] == 1, caught
    assert any(e.startswith(f"{inside['_id']}.events") for e in caught["examples"])
    assert not any(outside["_id"] in e for e in caught["examples"])
    # the whole input still sees both
    code, everything = _verify(topic, group, index_prefix)
    assert code == 1 and everything["documents"]["mismatched"] == 2, everything


def test_a_range_up_to_a_time_is_exact_on_input_another_partitioner_spread(
        new_topic: Callable[..., str], es_url: str, index_prefix: str, tmp_path: Path) -> None:
    # keyed by a CRC32 partitioner: most records are forwarded to the partition that owns their user, and each
    # partition's walk stops at --to at its own place in the input and in the repartition topic
    topic, group = new_topic(partitions=4, prefix="rc"), unique("g")
    first = (int(time.time() * 1000) - 100 * MINUTE) // MINUTE * MINUTE
    generate(topic, tmp_path / "l.gz", COUNT, "--rate", "0", "--event-rate", "8", "--start", str(first),
             "--crc32-key-fraction", "0.9", *CHAOS)
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, index_prefix)
    Elasticsearch(es_url).indices.refresh(index=f"{index_prefix}-*")

    for since, until in ((None, first + 30 * MINUTE), (first + 40 * MINUTE, first + 50 * MINUTE)):
        extra = ("--to", str(until)) if since is None else ("--from", str(since), "--to", str(until))
        code, report = _verify(topic, group, index_prefix, *extra)
        assert code == 0, json.dumps(report)[:4000]
        assert report["range"]["compared_up_to"] == until and report["documents"]["checked"] > 200, report
