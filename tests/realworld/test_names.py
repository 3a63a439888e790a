"""Case 4 of the real world: odd event type and status names from a plain producer. Every name the contract
accepts is stored and queried exactly; the others are dead-lettered as `bad_name`, never as store dead letters."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from pulse.store.indices import alias
from tests.aggregate.harness import run_aggregator_until_idle, run_store
from tests.cli_helpers import run_pulse
from tests.names import unique
from tests.realworld.plain import count_records, event, headers_of, now_ms, produce

ODD_BUT_VALID = ["x", "properties", "type", "a_b", "z9_", "fields", "x" * 32, "view"]
INVALID = [{"event_type": "view.x"}, {"event_type": "."}, {"event_type": "_id"}, {"event_type": "View"},
           {"status": "a.b"}, {"event_type": "view\n"}, {"status": "_source"}]


def test_every_name_the_contract_accepts_is_stored_and_the_others_are_dead_lettered_as_bad_name(
        bootstrap, es_url, new_topic, index_prefix) -> None:
    topic, group = new_topic(partitions=3, prefix="names"), unique("g")
    base = now_ms() - 60_000
    valid = [event(n, base + n, event_type=ODD_BUT_VALID[n % len(ODD_BUT_VALID)],
                   status=ODD_BUT_VALID[(n // 3) % len(ODD_BUT_VALID)]) for n in range(400)]
    invalid = [event(1000 + n, base + n, **change) for n, change in enumerate(INVALID)]
    produce(bootstrap, topic, valid + invalid, key=lambda e: e["user_id"])
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, index_prefix)
    Elasticsearch(es_url).indices.refresh(index=f"{index_prefix}-*")

    ok = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert count_records(bootstrap, f"{group}.store-dlq") == 0
    assert sorted(headers_of(bootstrap, f"{topic}.dlq", "pulse.reason")) == ["bad_name"] * len(INVALID)
    # every odd name is a queryable field of the merged windows, with its exact count
    es = Elasticsearch(es_url)
    windows = {"bool": {"filter": [{"term": {"window": "1h"}}, {"term": {"kind": "window"}}]}}
    for name in ODD_BUT_VALID:
        expected = sum(e["event_type"] == name for e in valid)
        got = es.search(index=alias("windows", index_prefix), size=0, query=windows,
                        aggs={"n": {"sum": {"field": f"counts.{name}"}}})["aggregations"]["n"]["value"]
        assert got == expected, name

