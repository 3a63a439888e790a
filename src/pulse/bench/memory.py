"""`pulse bench memory`: peak RSS of one aggregator process holding state for about a million distinct users.

Events are pre-produced with short sessions over a large user population (users drawn uniformly), then one
`pulse aggregate` process consumes them and exits once it has published every document (users included); its peak
resident set is the kernel's account of the whole run. The limit (2 GiB for 1M users) is checked against it.
The peak of the aggregator's own estimate of its state (``pulse_state_bytes``, scraped from its metrics endpoint)
is reported beside it: the resident peak also holds the documents and records of the final flush in flight,
which vary from run to run, while the state is what a change to the aggregation costs. Run with late events
spread over the correction horizon, the same input also measures what corrections cost.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from pulse.bench.aggregate import EXIT_IDLE_S, end_offsets, run_until_committed
from pulse.config import Settings
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.producer import EventProducer, RunLimits
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.observe import metrics
from pulse.stack.private import free_port
from pulse.topics import ensure_topics, input_topics

SCRAPE_EVERY_S = 0.25


@dataclass(frozen=True)
class MemoryResult:
    events: int
    distinct_users: int
    peak_rss_bytes: int
    peak_state_bytes: int  # the aggregator's own estimate (pulse_state_bytes), its largest value seen
    seconds: float


class CountingUsers:
    """Wraps the generator's records, remembering each distinct user key on the way to Kafka."""

    def __init__(self, records: Chaos) -> None:
        self._records = records
        self.users: set[bytes] = set()

    def __iter__(self) -> CountingUsers:
        return self

    def __next__(self) -> tuple:
        record = next(self._records)
        if record[1] is not None:
            self.users.add(record[1])
        return record


def rss(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:  # exited meanwhile
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _StateScraper:
    """The largest ``pulse_state_bytes`` the aggregator's metrics endpoint reports, scraped now and then."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.peak = 0
        self._last = 0.0
        self._name = metrics.STATE_BYTES.describe()[0].name

    def __call__(self) -> None:
        if time.monotonic() - self._last < SCRAPE_EVERY_S:
            return
        self._last = time.monotonic()
        try:
            text = httpx.get(self.url, timeout=0.5).text
        except httpx.HTTPError:  # not listening yet, or gone
            return
        for line in text.splitlines():
            if line.startswith(self._name + " "):
                self.peak = max(self.peak, int(float(line.split()[1])))


def run(settings: Settings, events: int, users: int, log: Path, late: float = 0.0, late_max_ms: int = 90_000,
        timeout: float = 1800) -> MemoryResult:
    """``late``: the fraction of events sent up to ``late_max_ms`` after their time (corrections, when within the
    horizon: they revise closed windows and keep each user's bitmap of the windows it was counted in)."""
    topic = f"pulse.bench.mem-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings.bootstrap, input_topics(topic, 6, 24))
    traffic = Traffic(TrafficConfig(seed=21, users=users, items_per_session=1.0, open_sessions=5_000, rate=5_000,
                                    start_ms=int(time.time() * 1000) - events // 5))
    records = CountingUsers(Chaos(traffic, ChaosConfig(late_fraction=late, late_max_ms=late_max_ms)))
    EventProducer(settings.bootstrap, topic, 6).run(records, RunLimits(count=events), lambda: 0.0)  # type: ignore[arg-type]
    group = f"bench-mem-{uuid.uuid4().hex[:6]}"
    ends = end_offsets(settings, topic)
    peak = [0]
    port = free_port()
    state = _StateScraper(port)

    def sample(pid: int) -> None:
        peak[0] = max(peak[0], rss(pid))
        state()

    argv = [sys.executable, "-m", "pulse", "aggregate", "--topic", topic, "--group", group, "--instance", group,
            "--exit-when-idle", str(EXIT_IDLE_S), "--metrics-addr", f"127.0.0.1:{port}"]
    timed = run_until_committed(settings, "the aggregator", argv, group, topic, ends, timeout, log, sample, exits=True)
    return MemoryResult(events, len(records.users), max(peak[0], timed.peak_rss_bytes), state.peak, timed.seconds)
