"""`pulse collect` as a client sees it, against the real broker: every answer is checked against the topic."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from pulse.aggregate._core import user_partition
from pulse.config import Settings
from pulse.dashboard.app import DashboardConfig, create_app
from pulse.stack.private import free_port
from pulse.topics import aggregates_topic, dead_letter_topic, ensure_topics, input_topics
from tests.aggregate.harness import read_latest_docs, run_aggregator_until_idle
from tests.cli_helpers import one_line_error, run_pulse
from tests.names import unique

PARTITIONS = 3
SERVER_KEY = "server-key-0123"
WEB_KEY = "web-key-4567"
SHOP = "https://shop.example"


@dataclass
class Collector:
    url: str
    topic: str
    proc: subprocess.Popen[bytes]


def start(topic: str, env: dict[str, str]) -> Collector:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "collect", "--topic", topic, "--port", str(port)],
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return Collector(url, topic, proc)
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the collector did not start")


def stop(c: Collector) -> None:
    c.proc.send_signal(2)  # Ctrl-C: a clean exit
    assert c.proc.wait(timeout=20) == 0


@pytest.fixture
def collector(bootstrap: str) -> Iterator[Collector]:
    topic = unique("collect")
    ensure_topics(bootstrap, input_topics(topic, PARTITIONS))
    c = start(topic, {"PULSE_COLLECT_KEYS": f"{SERVER_KEY};{WEB_KEY}={SHOP}"})
    yield c
    if c.proc.poll() is None:
        stop(c)


def event(**fields: object) -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "event_type": "click", "ts": int(time.time() * 1000) - 5000,
            "user_id": f"user-{uuid.uuid4().hex[:6]}", "session_id": "s-1", "item_id": "i-1", **fields}


def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes | None, bytes, dict[str, bytes]]]:
    """Every record of ``topic``: (partition, offset, key, value, headers)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("collect-read"), "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    out = []
    try:
        for p in range(PARTITIONS):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            c.assign([TopicPartition(topic, p, low)])
            while True:
                msg = c.poll(10)
                assert msg is not None and msg.error() is None
                out.append((p, msg.offset(), msg.key(), msg.value(), dict(msg.headers() or [])))
                if msg.offset() >= high - 1:
                    break
    finally:
        c.close()
    return out


def post(c: Collector, body: object, key: str | None = SERVER_KEY, **kw: object) -> httpx.Response:
    headers = {"X-Pulse-Key": key} if key else {}
    headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
    return httpx.post(f"{c.url}/v1/batch", content=orjson.dumps(body), headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def test_an_answer_says_where_kafka_put_each_event(collector: Collector, bootstrap: str) -> None:
    sent = [event() for _ in range(60)]
    r = post(collector, {"events": sent})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["result"] for x in results] == ["accepted"] * 60
    records = {(p, o): (k, v, h) for p, o, k, v, h in read_all(bootstrap, collector.topic)}
    assert len(records) == 60
    for ev, res in zip(sent, results, strict=True):
        key, value, headers = records[(res["partition"], res["offset"])]
        assert orjson.loads(value) == ev and key == str(ev["user_id"]).encode()
        # keyed as Kafka's default partitioner would: the aggregator owns the user there, no forwarding
        assert res["partition"] == user_partition(str(ev["user_id"]), PARTITIONS)
        assert int(headers["pulse.received.at"]) >= int(ev["ts"])  # type: ignore[call-overload]


def test_a_batch_whose_answer_was_lost_is_answered_duplicate_and_written_once(collector: Collector,
                                                                              bootstrap: str) -> None:
    sent = [event() for _ in range(20)]
    first = post(collector, sent)
    again = post(collector, sent)
    assert first.status_code == again.status_code == 200
    assert [x["result"] for x in again.json()["results"]] == ["duplicate"] * 20
    assert len(read_all(bootstrap, collector.topic)) == 20


def test_a_mixed_batch_answers_each_event_and_dead_letters_the_invalid(collector: Collector, bootstrap: str) -> None:
    good, purchase, extra = event(), event(event_type="purchase"), event(color="red")
    r = post(collector, {"events": [good, purchase, 42, extra]})
    assert r.status_code == 207
    results = r.json()["results"]
    assert [x["result"] for x in results] == ["accepted", "rejected", "rejected", "rejected"]
    assert [x.get("reason") for x in results[1:]] == ["inconsistent", "not_an_object", "unknown_field"]
    assert len(read_all(bootstrap, collector.topic)) == 1
    letters = read_all(bootstrap, dead_letter_topic(collector.topic))
    assert sorted(h["pulse.reason"] for *_, h in letters) == [b"inconsistent", b"not_an_object", b"unknown_field"]
    assert {h["pulse.source.topic"] for *_, h in letters} == {b"collector"}
    values = [orjson.loads(v) for *_, v, _ in letters]
    assert 42 in values and {v["event_id"] for v in values if v != 42} == {purchase["event_id"], extra["event_id"]}


def test_the_device_clock_is_corrected_before_kafka_has_the_event(collector: Collector, bootstrap: str) -> None:
    hour = 3_600_000
    now = int(time.time() * 1000)
    ev = event(ts=now + 2 * hour - 10_000)  # a device clock two hours fast, an event 10 s before sending
    r = post(collector, {"events": [ev], "sent_at": now + 2 * hour})
    assert r.status_code == 200, r.text
    [(_, _, _, value, headers)] = read_all(bootstrap, collector.topic)
    received = int(headers["pulse.received.at"])
    assert orjson.loads(value)["ts"] == received - 10_000
    assert int(headers["pulse.device.ts"]) == ev["ts"] and int(headers["pulse.sent.at"]) == now + 2 * hour


def test_the_front_door_refuses_what_it_must_and_loses_nothing(collector: Collector, bootstrap: str) -> None:
    c, ok = collector, [event()]
    assert post(c, ok, key=None).status_code == 401
    assert post(c, ok, key="not-a-key-at-all").status_code == 401
    assert post(c, ok, key=WEB_KEY, headers={"Origin": "https://evil.example"}).status_code == 403
    allowed = post(c, ok, key=WEB_KEY, headers={"Origin": SHOP})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == SHOP
    pre = httpx.options(f"{c.url}/v1/batch", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == SHOP
    assert httpx.options(f"{c.url}/v1/batch", headers={"Origin": "https://evil.example"}).status_code == 403
    # sendBeacon: text/plain, the key in the body, gzip without a Content-Encoding header
    beacon = gzip.compress(orjson.dumps({"events": [event()], "key": WEB_KEY}))
    r = httpx.post(f"{c.url}/v1/batch", content=beacon, headers={"Content-Type": "text/plain", "Origin": SHOP})
    assert r.status_code == 200, r.text
    query = httpx.post(f"{c.url}/v1/event?key={SERVER_KEY}", content=orjson.dumps(event()))
    assert query.status_code == 200 and query.json()["results"][0]["result"] == "accepted"
    bomb = gzip.compress(b'{"events": [' + b" " * 60_000_000 + b"]}")
    refused = {
        "bomb": httpx.post(f"{c.url}/v1/batch", content=bomb, headers={"X-Pulse-Key": SERVER_KEY,
                                                                       "Content-Encoding": "gzip"}),
        "malformed": httpx.post(f"{c.url}/v1/batch", content=b'{"events": [', headers={"X-Pulse-Key": SERVER_KEY}),
        "10,000": post(c, [event() for _ in range(10_000)]),
        "too many": post(c, [event() for _ in range(1001)]),
        "body": post(c, {"events": [event(category="x" * 64) for _ in range(900)], "pad": "y" * 900_000}),
        "event": httpx.post(f"{c.url}/v1/event", content=orjson.dumps(event(category="x" * 5000)),
                            headers={"X-Pulse-Key": SERVER_KEY}),
    }
    assert {k: r.status_code for k, r in refused.items()} == {"bomb": 413, "malformed": 400, "10,000": 413,
                                                               "too many": 413, "body": 413, "event": 413}
    assert refused["too many"].json()["error"] == "too_many_events"
    assert httpx.get(f"{c.url}/healthz").status_code == 200  # still up
    assert len(read_all(bootstrap, c.topic)) == 3  # the three accepted, nothing of the refused
    metrics = httpx.get(f"{c.url}/metrics").text
    assert 'pulse_collect_refused_requests_total{reason="bad_key"} 2.0' in metrics
    assert 'pulse_collect_events_total{result="accepted"} 3.0' in metrics


def test_operator_mistakes_get_one_line(bootstrap: str) -> None:
    exposed = run_pulse("collect", "--host", "0.0.0.0", "--topic", "pulse.events", timeout=60)
    assert "without write keys" in one_line_error(exposed)
    missing = run_pulse("collect", "--topic", unique("collect-none"), "--port", str(free_port()), timeout=60)
    assert "does not exist" in one_line_error(missing)


def test_a_key_over_its_rate_gets_429_and_its_events_are_not_taken(bootstrap: str) -> None:
    topic = unique("collect")
    ensure_topics(bootstrap, input_topics(topic, PARTITIONS))
    c = start(topic, {"PULSE_COLLECT_KEYS": f"{SERVER_KEY};{WEB_KEY}={SHOP}", "PULSE_COLLECT_RATE_LIMIT": "40"})
    try:
        assert post(c, [event() for _ in range(40)]).status_code == 200
        over = post(c, [event() for _ in range(40)])
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert post(c, [event()], key=WEB_KEY).status_code == 200  # another key has its own rate
        assert len(read_all(bootstrap, topic)) == 41
    finally:
        stop(c)


def test_a_batch_resent_after_a_restart_is_counted_once_by_the_aggregator(collector: Collector,
                                                                          bootstrap: str) -> None:
    """The first answer was lost and the collector restarted (it forgot the ids): it accepts the batch again, and
    the aggregator's duplicate detection counts each event once."""
    sent = [event() for _ in range(30)]
    assert post(collector, sent).status_code == 200
    stop(collector)
    again = start(collector.topic, {"PULSE_COLLECT_KEYS": SERVER_KEY})
    try:
        resent = post(again, sent)
        assert [x["result"] for x in resent.json()["results"]] == ["accepted"] * 30
    finally:
        stop(again)
    assert len(read_all(bootstrap, collector.topic)) == 60
    group = unique("collect-agg")
    run_aggregator_until_idle(collector.topic, group)
    docs = read_latest_docs(bootstrap, aggregates_topic(group))
    parts = [d for d in docs.values() if d["kind"] == "partition"]
    assert sum(d["accepted"] for d in parts) == 30 and sum(d["duplicates"] for d in parts) == 30
    windows = [d for d in docs.values() if d["kind"] == "window" and d["window"] == "10s"]
    assert sum(d["events"] for d in windows) == 30


def test_the_dashboard_shows_the_collectors_counts(collector: Collector, bootstrap: str, settings: Settings) -> None:
    """The counts the dashboard shows for a collector are what Kafka holds from it, and a collector that does not
    answer is named."""
    good = [event() for _ in range(5)]
    assert post(collector, {"events": [*good, good[0], event(event_type="purchase")]}).status_code == 207
    assert post(collector, {"events": good[:2]}).status_code == 200  # a resent batch: both duplicates
    assert post(collector, {"events": [event()]}, key="wrong-key").status_code == 401
    written = read_all(bootstrap, collector.topic)
    dead = read_all(bootstrap, dead_letter_topic(collector.topic))
    silent = f"http://127.0.0.1:{free_port()}"
    app = create_app(DashboardConfig(es=settings.es, index_prefix=unique("collect-dash"), allowed_hosts=("*",),
                                     collectors=(collector.url, silent)))
    shown = TestClient(app).get("/api/health").json()["collector"]
    assert shown["events"]["accepted"] == len(written) == 5
    assert shown["events"]["rejected"] == len(dead) == 1
    assert shown["events"]["duplicate"] == 3
    assert shown["refused"] == {"bad_key": 1} and shown["refused_requests"] == 1
    assert shown["unreachable"] == [silent] and (shown["collectors"], shown["ready"]) == (2, 1)
