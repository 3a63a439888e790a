"""`pulse verify --follow` beside a live pipeline fed by a plain client's partitioner: it checks each window once
final, catches a document altered in Elasticsearch within two of the aggregator's flushes (the metric rises, a
log line names the document and field), and after a restart goes on from its checkpoint without reporting the same
difference twice."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from elasticsearch import Elasticsearch

from pulse.store.indices import alias
from tests.live import Stage, metric, wait_for
from tests.names import unique
from tests.realworld.private_stack import free_port

FLUSHES = re.compile(r"^pulse_flush_seconds_count (\S+)$", re.M)


def _final_unchecked_window(es: Elasticsearch, prefix: str, checked_to: dict[int, int]) -> dict | None:
    """A 10 s window's own summary the aggregator has finished (its partition's watermark is past its end) but the
    stopped follower has not compared yet."""
    parts = es.search(index=alias("partitions", prefix), size=100, query={"term": {"kind": "partition"}})
    for hit in parts["hits"]["hits"]:
        p, watermark = hit["_source"]["partition"], hit["_source"].get("watermark") or 0
        query = {"bool": {"filter": [{"term": {"kind": "window"}}, {"term": {"window": "10s"}},
                                     {"term": {"partition": p}},
                                     {"range": {"end": {"gt": checked_to.get(str(p), 0), "lte": watermark - 10_000}}}],
                           # a window's own summary: the follower leaves revisions to the one-shot verify
                           "must_not": [{"exists": {"field": "revision"}}]}}
        found = es.search(index=alias("windows", prefix), size=1, query=query, sort=[{"end": "asc"}])["hits"]["hits"]
        if found:
            return found[0]
    return None


@pytest.mark.slow
def test_follow_catches_an_altered_window_in_its_next_round_and_resumes_from_its_checkpoint(
        bootstrap: str, es_url: str, new_topic: Callable[..., str], index_prefix: str, tmp_path: Path,
        stages: list[Stage], monkeypatch: pytest.MonkeyPatch) -> None:
    # every stage (generator, aggregator, followers) with a 20 s correction horizon, and late events 35-45 s behind
    # (corrections, past the 30 s grace): their windows' revisions are compared 20 s after the windows
    monkeypatch.setenv("PULSE_CORRECT_WITHIN", "20s")
    monkeypatch.setenv("PULSE_GENERATE_LATE_MAX", "15s")
    topic, group = new_topic(partitions=3, prefix="fo"), unique("g")
    agg_port, verify_port = free_port(), free_port()
    state = tmp_path / "verify.json"
    where = ("--topic", topic, "--group", group)
    stages.append(Stage(tmp_path / "generate.log", "generate", "--topic", topic, "--rate", "300", "--duration", "240s",
                        "--crc32-key-fraction", "0.9", "--late-fraction", "0.01", "--duplicate-fraction", "0.01",
                        "--invalid-fraction", "0.01", "--disorder-fraction", "0.01", "--no-progress"))
    stages.append(Stage(tmp_path / "aggregate.log", "aggregate", *where, "--metrics-addr", f"127.0.0.1:{agg_port}"))
    stages.append(Stage(tmp_path / "store.log", "store", *where, "--index-prefix", index_prefix))
    follow = Stage(tmp_path / "verify.log", "verify", "--follow", *where, "--index-prefix", index_prefix,
                   "--state-file", str(state), "--metrics-addr", f"127.0.0.1:{verify_port}")
    stages.append(follow)

    def checked() -> float:
        return metric(verify_port, "pulse_verify_windows_checked_total")

    wait_for(lambda: checked() > 0 and metric(verify_port, "pulse_verify_checked_up_to_ms") > 0, 150,
             "the follower's first checked windows", follow.text)
    assert metric(verify_port, "pulse_verify_mismatches_total") == 0, follow.text()

    # hold the follower while a window it has not compared yet becomes final and stored, then alter that window
    rounds = metric(verify_port, "pulse_verify_rounds_total")
    follow.proc.send_signal(signal.SIGSTOP)
    es = Elasticsearch(es_url)
    checked_to = json.loads(state.read_text())["checked_to"]
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        time.sleep(1)
        es.indices.refresh(index=f"{index_prefix}-*")
        victim = _final_unchecked_window(es, index_prefix, checked_to)
    assert victim is not None, "no window became final while the follower was held"
    es.update(index=victim["_index"], id=victim["_id"], doc={"events": victim["_source"]["events"] + 1000},
              refresh=True)
    flushes = float(FLUSHES.search(httpx.get(f"http://127.0.0.1:{agg_port}/metrics").text).group(1))  # type: ignore[union-attr]
    follow.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: metric(verify_port, "pulse_verify_mismatches_total") >= 1, 60, "the mismatch", follow.text)
    after = float(FLUSHES.search(httpx.get(f"http://127.0.0.1:{agg_port}/metrics").text).group(1))  # type: ignore[union-attr]
    # caught by the first round that starts after the alteration (the one held may have been under way): how
    # many of the aggregator's flushes that takes depends on how fast the store writes (two on an idle machine)
    took = metric(verify_port, "pulse_verify_rounds_total") - rounds
    assert took <= 2, f"caught {took:.0f} rounds later ({after - flushes:.0f} flushes):\n{follow.text()[-3000:]}"
    assert metric(verify_port, "pulse_verify_mismatches_total") == 1
    # windows' corrections are compared too, once beyond the horizon, and equal the recompute's
    wait_for(lambda: metric(verify_port, "pulse_verify_revisions_checked_total") > 0, 60, "compared corrections",
             follow.text)
    assert metric(verify_port, "pulse_verify_mismatches_total") == 1, follow.text()
    line = next(x for x in follow.text().splitlines() if "verify mismatch" in x)
    assert f"{victim['_id']}.events" in line, line
    # the dashboard's health shows it
    from pulse.store import query
    wait_for(lambda: query.pipeline_health(es, index_prefix)["verify_differences"] == 1, 10,  # searchable within 1 s
             "the heartbeat with the difference", follow.text)
    assert victim["_id"] in query.pipeline_health(es, index_prefix)["verify_first_difference"]

    # a restart walks from the start again but reports nothing it reported before, and goes on checking
    assert follow.stop() == 0 and "verify: stopped" in follow.text()
    saved = json.loads(state.read_text())["checked_to"]
    again = Stage(tmp_path / "verify2.log", "verify", "--follow", *where, "--index-prefix", index_prefix,
                  "--state-file", str(state), "--metrics-addr", f"127.0.0.1:{verify_port}")
    stages.append(again)
    wait_for(lambda: metric(verify_port, "pulse_verify_checked_up_to_ms") > max(saved.values()) + 10_000, 120,
             "windows past the checkpoint", again.text)
    assert metric(verify_port, "pulse_verify_mismatches_total") == 0, again.text()
    assert victim["_id"] not in again.text() and checked() > 0
    # each window was compared once over the two runs: the restart started past where the first run stopped
    assert all(int(v) >= saved[p] for p, v in json.loads(state.read_text())["checked_to"].items())
