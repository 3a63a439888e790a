"""Backlog equals live: one input, read by a group running while it is produced, by a group reading it as a
backlog, and by a group SIGKILLed twice during that backlog, gives the same late count, the same documents and an
exact `pulse verify`, whatever the producer's keys. A record is on time or late where it is read (its input
partition, in offset order), so the hop through `<group>.repartition` that records not keyed by murmur2(user_id)
take must not change a verdict, however long they wait there."""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from pulse.generate.partitioner import partition_for
from pulse.kafkaio import read_range
from pulse.verify import revisions
from tests.aggregate.harness import (
    read_latest_docs,
    run_aggregator_until_idle,
    run_store,
    start_aggregator,
)
from tests.cli_helpers import run_pulse
from tests.names import unique
from tests.realworld.plain import count_records, event, now_ms, produce

PARTITIONS = 6
GRACE_MS = 30_000  # the aggregator's default
HORIZON_MS = 100_000  # the correction horizon: late records (90-120 s below the watermark) straddle it
SPAN_MS = 180_000  # event time the input covers
STEPS = ("view", "click", "add_to_cart", "purchase")
CATEGORIES = ("books", "games", "garden")
REQUIRED = {"event_id": str, "event_type": str, "ts": int, "user_id": str, "session_id": str}
COUNTERS = ("counted", "duplicates", "late", "dead_lettered")
"""``counted``: accepted + corrected (which of the two, the owner's watermark decides: the test does not follow
it)."""
VOLATILE = frozenset({"version", "repartition_offset", "flushed_at"})
"""Where a run was when it wrote a document (its input and repartition topic positions: batching and watermark
markers) and when: how a run was cut into flushes, not what it counted."""
Record = dict[str, Any] | bytes


def _user(e: dict[str, Any]) -> str | None:
    user = e.get("user_id")
    return user if isinstance(user, str) else None


def _murmur2(e: dict[str, Any]) -> int | None:
    user = _user(e)
    return None if user is None else partition_for(user.encode(), PARTITIONS)


KEYINGS: dict[str, tuple[Callable[[dict[str, Any]], str | None], Callable[[dict[str, Any]], int | None] | None]] = {
    "murmur2": (_user, _murmur2),  # keyed by user, partitioned as a Java client does: the direct path
    "crc32": (_user, None),  # keyed by user, librdkafka's default partitioner: mostly another partition
    "null": (lambda e: None, None),  # unkeyed: a random partition
}


def record_set(base: int) -> list[Record]:
    """About 990 records in time order over SPAN_MS of past event time (40 users, 60 sessions walking the funnel,
    10 items each with its own category), with what real input has: events on window edges, disorder within the
    grace, late events, re-sent duplicates (some re-sent so much later that the copy is late) and invalid records.
    Event times are unique, so that nothing (a user's latest item) depends on arrival order among equal times."""
    rnd = random.Random(7)
    edges = sorted({t - d for t in range(base + 10_000, base + SPAN_MS, 10_000) for d in (0, 1)})
    used = set(edges)
    progress = [0] * 60  # each session's next funnel step
    records: list[Record] = []
    later: dict[int, list[Record]] = defaultdict(list)
    ids = itertools.count()

    def make(ts: int, edge: bool = False) -> dict[str, Any]:
        while not edge and ts in used:
            ts += 1
        used.add(ts)
        s, item = rnd.randrange(60), rnd.randrange(10)
        etype, ok = STEPS[progress[s] % 4], rnd.random() < 0.85
        progress[s] += ok
        fields: dict[str, Any] = {"event_type": etype, "user_id": f"u{s % 40}", "session_id": f"s{s}",
                                  "item_id": f"i{item}", "category": CATEGORIES[item % 3],
                                  "status": "ok" if ok else rnd.choice(("error", "timeout"))}
        if etype == "purchase":
            price = rnd.randint(100, 20_000) / 100
            fields |= {"price": price, "quantity": 2, "amount": round(2 * price, 2)}
        return event(next(ids), ts, **fields)

    invalid: list[Record] = [b"not json", b"{", b"\xff\xfe", b"[1, 2, 3]", b'"an event"',
                             {"event_id": "bad-1", "event_type": "view", "ts": base, "session_id": "s1"},
                             {"event_type": "view", "ts": base, "user_id": "u1", "session_id": "s1"},
                             {"event_id": "bad-3", "event_type": "view", "ts": str(base), "user_id": "u1",
                              "session_id": "s1"},
                             {"event_id": "bad-4", "event_type": "view", "ts": base, "user_id": 7, "session_id": "s1"},
                             {"event_id": "bad-5", "event_type": "view", "ts": base, "user_id": "u1"}]
    for n in range(900):
        ts = base + 200 * n + 7
        while edges and edges[0] <= ts:
            records.append(make(edges.pop(0), edge=True))
        main = make(ts)
        records.append(main)
        records.extend(later.pop(n, []))
        if n % 100 == 50:
            records.append(make(ts - rnd.randint(2_000, 8_000)))  # disordered, within the grace
        if n >= 620 and n % 14 == 0:
            records.append(make(ts - rnd.randint(120_000, 150_000)))  # late
        if n % 60 == 17:  # re-sent 1-6 s of event time later; the first two about 140 s later (the copy is late)
            later[n + (700 if n < 100 else rnd.randint(5, 30))].append(main)
        if n % 90 == 45:
            records.append(invalid.pop())
    assert not later and not invalid
    return records


def produce_paced(bootstrap: str, topic: str, records: list[Record], keying: str) -> None:
    """In chunks of 10 over about 20 s, never quiet for long: the live group reads it as it comes."""
    key, partition = KEYINGS[keying]
    for i in range(0, len(records), 10):
        produce(bootstrap, topic, records[i:i + 10], key=key, partition=partition)
        time.sleep(0.2)


def _valid(value: bytes | None) -> dict[str, Any] | None:
    try:
        e = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    ok = isinstance(e, dict) and all(isinstance(e.get(f), t) for f, t in REQUIRED.items())
    return e if ok else None


def expected_counters(bootstrap: str, topic: str) -> dict[str, int]:
    """Counted here from the topic as written: per partition in offset order, watermark = the largest
    min(ts, record timestamp) of the on-time valid events before, minus the grace; an event below it by more than
    the correction horizon is too late, one below it by less counts (a correction), and neither moves it. An event
    id that counts more than once (wherever its copies were read) is a duplicate after the first: copies are
    identical, so well within the duplicate horizon of each other."""
    counters: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    for p in range(PARTITIONS):
        clock: int | None = None
        for _, _, value, record_ts in read_range(bootstrap, topic, p, 0):
            e = _valid(value)
            if e is None:
                counters["dead_lettered"] += 1
            elif clock is not None and e["ts"] < clock - GRACE_MS - HORIZON_MS:
                counters["late"] += 1
            else:
                if clock is None or e["ts"] >= clock - GRACE_MS:
                    clock = max(clock or 0, min(e["ts"], record_ts))
                counted[e["event_id"]] += 1
    counters["counted"], counters["duplicates"] = len(counted), counted.total() - len(counted)
    return {name: counters[name] for name in COUNTERS}


def _kill(agg: subprocess.Popen[bytes]) -> None:
    agg.send_signal(signal.SIGKILL)
    agg.wait(30)


def backlog_with_kills(bootstrap: str, topic: str, group: str, log: Path) -> None:
    """SIGKILLed as soon as it has committed something (forwarded records or documents), again 1.5 s after its
    restart (joining or restoring), then run to the end."""
    agg = start_aggregator(topic, group, log=log)
    deadline = time.monotonic() + 60
    while count_records(bootstrap, f"{group}.repartition") + count_records(bootstrap, f"{group}.aggregates") == 0:
        assert time.monotonic() < deadline, f"{group} committed nothing in 60 s"
        time.sleep(0.1)
    _kill(agg)
    agg = start_aggregator(topic, group, log=log)
    time.sleep(1.5)
    _kill(agg)
    run_aggregator_until_idle(topic, group, idle_s=2)


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in VOLATILE}


def doc_diff(left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]], limit: int = 8) -> list[str]:
    """A compact difference: missing and extra ids, then the first differing fields."""
    only_left, only_right = sorted(left.keys() - right.keys()), sorted(right.keys() - left.keys())
    differ = [i for i in sorted(left.keys() & right.keys()) if _stable(left[i]) != _stable(right[i])]
    if not (only_left or only_right or differ):
        return []
    out = [f"{len(differ)} of {len(left)} documents differ, {len(only_left)} only left, {len(only_right)} only right"]
    out += [f"only left: {only_left[:limit]}"] if only_left else []
    out += [f"only right: {only_right[:limit]}"] if only_right else []
    for i in differ[:limit]:
        a, b = _stable(left[i]), _stable(right[i])
        fields = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        out.append(f"{i}: " + "; ".join(f"{k} {a.get(k)!r:.80} != {b.get(k)!r:.80}" for k in fields[:4]))
    return out


@pytest.mark.parametrize("keying", list(KEYINGS))
def test_backlog_equals_live(keying: str, bootstrap, es_url, new_topic, index_prefix, tmp_path,
                            monkeypatch) -> None:
    # no idle rule: it closes windows by the wall clock, a decision a run takes or not depending on its timing
    # (a restarted group sits quiet at the end of its input long enough): the three reads are to be compared
    monkeypatch.setenv("PULSE_IDLE_TIMEOUT", "1h")
    monkeypatch.setenv("PULSE_CORRECT_WITHIN", f"{HORIZON_MS}ms")
    topic = new_topic(partitions=PARTITIONS, prefix="arrival")
    groups = {"live": unique("ga"), "backlog": unique("gb"), "killed": unique("gc")}
    records = record_set(now_ms() // 60_000 * 60_000 - 10 * 60_000)  # all in the past: ts below record time

    live = start_aggregator(topic, groups["live"], "--exit-when-idle", "2", log=tmp_path / "live.log")
    produce_paced(bootstrap, topic, records, keying)
    assert live.poll() is None, "the live aggregator exited while its input was still being produced"

    def read(run: str) -> tuple[dict[str, dict[str, Any]], str | None]:
        """One read to its end, then stored and checked by `pulse verify`: its documents, and what went wrong."""
        group, prefix = groups[run], f"{index_prefix}-{run}"  # under the fixture's `<index_prefix>-*`
        if run == "live":
            assert live.wait(120) == 0, (tmp_path / "live.log").read_text()[-3000:]
        elif run == "backlog":
            run_aggregator_until_idle(topic, group, idle_s=2)
        else:
            backlog_with_kills(bootstrap, topic, group, tmp_path / "killed.log")
        docs = revisions.arrival_free(revisions.summed(read_latest_docs(bootstrap, f"{group}.aggregates").items()))
        run_store(topic, group, prefix, idle=1.5)
        Elasticsearch(es_url).indices.refresh(index=f"{prefix}-*")
        proc = run_pulse("verify", "--topic", topic, "--group", group, "--index-prefix", prefix)
        return docs, None if proc.returncode == 0 else \
            f"{run}: pulse verify exited {proc.returncode}: ...{(proc.stdout + proc.stderr)[-900:]}"

    with ThreadPoolExecutor(4) as pool:  # the three reads overlap: they share nothing but the input
        counting = pool.submit(expected_counters, bootstrap, topic)
        reads = dict(zip(groups, pool.map(read, groups), strict=True))
        expected = counting.result()
    assert sum(expected.values()) == len(records) and expected["dead_lettered"] == 10
    assert expected["late"] >= 5 and expected["duplicates"] >= 10  # the record set is what it says
    problems = [problem for _, problem in reads.values() if problem]
    for run, (found, _) in reads.items():
        parts = [d for i, d in found.items() if i.startswith("partition:")]
        counted = {name: sum(d[name] for d in parts) for name in COUNTERS[1:]}
        counted = {"counted": sum(d["accepted"] + d["corrected"] for d in parts), **counted}
        if counted != expected:
            problems.append(f"{run}: counted {counted}, expected {expected}")
        forwarded = sum(d.get("forwarded", 0) for d in parts)
        if (forwarded == 0) != (keying == "murmur2"):
            problems.append(f"{run}: {forwarded} records forwarded with {keying} keys")
    for run in ("backlog", "killed"):
        if diff := doc_diff(reads["live"][0], reads[run][0]):
            problems.append(f"live != {run}:\n  " + "\n  ".join(diff))
    assert not problems, "\n".join(problems)
