"""Late events are counted, on the real broker and node: live traffic from `pulse generate`, and a plain client
(default partitioner: CRC-32 of the key) replaying the same users' history from 2 hours, 1 day and 6 days ago,
re-sending events already counted, while the aggregator is SIGKILLed twice. Within the 3-day horizon every event
counts exactly once in its windows, and each user once in its hours; the 6-day-old ones are too late, in
`.late` with their reason."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from elasticsearch import Elasticsearch

from pulse.aggregate.config import StateConfig
from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.stack.private import free_port
from pulse.stack.process import interrupt
from pulse.store import query
from pulse.verify.source import topic_rows
from tests.aggregate.harness import run_aggregator_until_idle, run_store, start_aggregator
from tests.cli_helpers import run_pulse
from tests.dashboard.test_dashboard_errors import _first_answer
from tests.names import unique
from tests.realworld.plain import count_records, headers_of, now_ms, produce

HOUR, DAY = 3_600_000, 86_400_000
AGES = {"2h": 2 * HOUR, "1d": DAY, "6d": 6 * DAY}
PER_AGE = 600


def _history(now: int) -> list[dict]:
    """Each age: ten minutes of the generator's users' views, from that long ago."""
    rnd = random.Random(7)
    return [{"event_id": f"h-{name}-{i}", "event_type": "view", "ts": now - age + i * 1000,
             "user_id": f"u{rnd.randrange(300):07d}", "session_id": f"hs{i % 40}", "item_id": f"i{i % 17}",
             "category": "books", "status": "ok"}
            for name, age in AGES.items() for i in range(PER_AGE)]


def _dashboard_shows_the_revisions(es_url: str, prefix: str, now: int, events: dict[str, Event]) -> None:
    """The dashboard's API over the ten minutes replayed from two hours ago: every event there came late, so each
    window's total is the distinct history events in it, all of them "+N late events", and its revisions add up
    to that."""
    port = free_port()
    env = dict(os.environ) | {"PULSE_ES_URL": es_url, "PULSE_INDEX_PREFIX": prefix}
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "dashboard", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        lo, hi = now - AGES["2h"] - 60_000, now - AGES["2h"] + 11 * 60_000
        api = f"http://127.0.0.1:{port}/api"
        o = _first_answer(proc, f"{api}/overview?from={lo}&to={hi}").json()
        size = o["window_ms"]
        want = Counter(e.ts // size * size for e in events.values() if lo <= e.ts < hi)
        starts, types = o["series"]["t"], o["series"]["types"].values()
        assert {t: sum(v[i] for v in types) for i, t in enumerate(starts)} == dict(want)
        assert o["series"]["corrected"] == [want[t] for t in starts]
        newest = sorted(want, reverse=True)[:query.REVISED_SHOWN]
        assert o["revised"] == [{"start": t, "corrected": want[t]} for t in newest]
        revisions = httpx.get(f"{api}/revisions", params={"window": o["window"], "start": newest[0]}, timeout=10).json()
        assert revisions and sum(r["events"] for r in revisions) == want[newest[0]]
        assert all(r["revised_at"] > now for r in revisions)
    finally:
        interrupt(proc, 10)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_history_replayed_beside_live_traffic_counts_every_event_once(bootstrap, es_url, new_topic, index_prefix,
                                                                     tmp_path: Path) -> None:
    topic, group = new_topic(partitions=6, prefix="corr"), unique("g")
    log = tmp_path / "agg.log"
    now = now_ms()
    agg = start_aggregator(topic, group, log=log)
    live = subprocess.Popen([sys.executable, "-m", "pulse", "generate", "--topic", topic, "--rate", "400",
                             "--duration", "20", "--users", "300", "--seed", "5", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(4)
    history = _history(now)
    produce(bootstrap, topic, history[: len(history) // 2], key=lambda e: e["user_id"])
    _kill(agg)  # mid-correction
    agg = start_aggregator(topic, group, log=log)
    produce(bootstrap, topic, history[len(history) // 2:], key=lambda e: e["user_id"])
    time.sleep(2)
    _kill(agg)  # restoring or catching up
    # retries: history and live events sent again, byte for byte (live ones as they stand in the topic)
    again = [e for e in history if e["event_id"].startswith(("h-2h", "h-1d"))][::10]
    produce(bootstrap, topic, again, key=lambda e: e["user_id"])
    live_values = [v for _, _, v, _ in topic_rows(bootstrap, topic)
                   if v and b'"event_id":"h-' not in v][:60]
    produce(bootstrap, topic, live_values)
    assert live.wait(120) == 0, live.stderr.read() if live.stderr else ""
    run_aggregator_until_idle(topic, group)
    run_store(topic, group, index_prefix)
    es = Elasticsearch(es_url)
    es.indices.refresh(index=f"{index_prefix}-*")

    # the too-late: every 6-day-old event, and nothing else, with its reason
    too_old = sum(1 for e in history if e["event_id"].startswith("h-6d"))
    assert count_records(bootstrap, f"{topic}.late") == too_old
    assert set(headers_of(bootstrap, f"{topic}.late", "pulse.reason")) == {"beyond_horizon"}

    # an independent recompute from the topic: every distinct valid event within the horizon, once, per hour
    rows = topic_rows(bootstrap, topic)
    events = {}
    for _, _, value, record_ts in rows:
        e = validate(value or b"", record_ts)
        if isinstance(e, Event) and e.ts >= now - StateConfig.correct_within_ms:
            events.setdefault(e.event_id, e)
    assert len(events) > 8_500 and len(rows) > len(events) + too_old  # the retries are in the topic
    want: Counter[int] = Counter(e.ts // HOUR * HOUR for e in events.values())
    users: dict[int, set[str]] = {}
    for e in events.values():
        users.setdefault(e.ts // HOUR * HOUR, set()).add(e.user_id)
    buckets = query.window_buckets(es, query.Filters(now - 2 * DAY, now + HOUR), "1h", prefix=index_prefix)
    got = {start: b["events"] for start, b in buckets.items() if b["events"]}
    assert got == dict(want)
    # distinct users add over a window's own documents and its revisions: each user counted once
    assert {start: b["unique_users"] for start, b in buckets.items() if b["events"]} == \
        {hour: len(u) for hour, u in users.items()}
    days = query.window_buckets(es, query.Filters(now - 2 * DAY, now + DAY), "1d", prefix=index_prefix)
    assert sum(b["events"] for b in days.values()) == len(events)

    docs = [d for d in query.all_documents(es, index_prefix) if d[1]["kind"] == "partition"]
    totals = Counter({k: sum(d[k] for _, d in docs) for k in ("accepted", "corrected", "duplicates", "late")})
    assert totals["accepted"] + totals["corrected"] == len(events) and totals["late"] == too_old
    assert totals["corrected"] >= 2 * PER_AGE and totals["duplicates"] >= len(again) + len(live_values)

    _dashboard_shows_the_revisions(es_url, index_prefix, now, events)

    ok = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", index_prefix)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{totals['corrected']:,} corrected" in ok.stdout
