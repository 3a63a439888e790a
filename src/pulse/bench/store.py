"""`pulse bench store`: Elasticsearch write cost per event, and freshness from event to search.

Write cost: events are pre-produced with event time advancing at the target rate (default 50k/s), and the
aggregator flushes every ``rate × flush interval`` records, exactly what a live pipeline flushing once per
interval would do at that rate (item shards every 5 s, busy partitions' users every 30 s). Every document it
publishes is one Elasticsearch bulk item, so documents per 1000 events is the write cost (the naive design:
1000), the final flush at stop included. The writer can only coalesce further.

Freshness: a live pipeline (generator paced in real time → aggregator → writer) at a rate this machine
sustains; a sampler searches the partition documents every 200 ms and records the age of the newest event
visible in search. Budget: flush interval + refresh interval + 1 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pulse.aggregate.engine import Engine, EngineConfig
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.producer import EventProducer, RunLimits
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.stack.process import interrupt
from pulse.store.indices import AGGREGATES_REFRESH_S, alias, ensure_indices
from pulse.topics import aggregator_topics, ensure_topics, input_topics

REFRESH_S = AGGREGATES_REFRESH_S


@dataclass(frozen=True)
class WriteCost:
    events: int
    documents: int
    flushes: int
    rate: float
    by_kind: dict[str, int]

    @property
    def per_1000(self) -> float:
        return 1000 * self.documents / self.events


@dataclass(frozen=True)
class Freshness:
    rate: float
    seconds: float
    samples: list[float]

    def quantile(self, q: float) -> float:
        return statistics.quantiles(self.samples, n=100, method="inclusive")[round(q * 100) - 1]


def _topic(settings: Settings, name: str) -> str:
    ensure_topics(settings.bootstrap, input_topics(name, 6, 24))
    return name


def write_cost(settings: Settings, events: int, rate: float, flush_s: float = 1.0, detail_s: float = 5.0) -> WriteCost:
    topic = _topic(settings, f"pulse.bench.store-{uuid.uuid4().hex[:6]}")
    traffic = Traffic(TrafficConfig(seed=11, rate=rate, start_ms=int(time.time() * 1000) - 3_600_000))
    EventProducer(settings.bootstrap, topic, 6).run(Chaos(traffic, ChaosConfig()), RunLimits(count=events),
                                                    lambda: 0.0)
    per_flush = max(1, round(rate * flush_s))
    engine = Engine(EngineConfig(bootstrap=settings.bootstrap, topic=topic, group=f"bench-store-{uuid.uuid4().hex[:6]}",
                                 instance="bench", flush_interval_s=3600, batch_size=min(10_000, per_flush),
                                 flush_records=per_flush, detail_flushes=max(1, round(detail_s / flush_s)),
                                 clock_per_flush_s=flush_s))
    ensure_topics(settings.bootstrap, aggregator_topics(engine.cfg.group, 6))
    stats = engine.run(threading.Event(), exit_when_idle_s=2.0)
    return WriteCost(stats.consumed, stats.docs, stats.flushes, rate, dict(stats.docs_by_kind.most_common()))


def freshness(settings: Settings, rate: float, seconds: float, log: Path, warmup_s: float = 8.0) -> Freshness:
    tag = uuid.uuid4().hex[:6]
    topic, group, prefix = _topic(settings, f"pulse.bench.fresh-{tag}"), f"bench-fresh-{tag}", f"bench-{tag}"
    es = settings.es.client()
    ensure_indices(es, prefix)
    py = [sys.executable, "-m", "pulse"]
    argvs = [
        [*py, "aggregate", "--topic", topic, "--group", group, "--instance", f"fresh-{tag}"],
        [*py, "store", "--topic", topic, "--group", group, "--index-prefix", prefix],
        [*py, "generate", "--topic", topic, "--rate", str(rate), "--duration", str(seconds + warmup_s),
         "--no-progress"],
    ]
    procs = []
    samples: list[float] = []
    env = dict(os.environ)
    try:
        with log.open("ab") as out:
            for argv in argvs:
                procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env=env))
            t0 = time.monotonic()
            index = alias("partitions", prefix)
            while time.monotonic() - t0 < seconds + warmup_s:
                for p in procs[:2]:
                    if p.poll() is not None:
                        raise PulseError(f"a pipeline stage exited early ({p.args[3]}); see {log}")
                resp = es.search(index=index, size=0, aggs={"newest": {"max": {"field": "max_event_ts"}}})
                newest = resp["aggregations"]["newest"]["value"]
                if newest is not None and time.monotonic() - t0 >= warmup_s:
                    samples.append(time.time() - newest / 1000)
                time.sleep(0.2)
    finally:
        for p in reversed(procs):
            interrupt(p)
        es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
    if len(samples) < 10:
        raise PulseError(f"too few freshness samples ({len(samples)}); is the pipeline producing? see {log}")
    return Freshness(rate, seconds, samples)
