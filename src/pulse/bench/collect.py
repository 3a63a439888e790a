"""`pulse bench collect`: events/s through `pulse collect` over HTTP (batches of 100), and its p99 time to answer
at half that rate, against Pulse's own Kafka producer (`pulse bench produce`'s contender) in the same run.

Both write a fresh topic on the same broker with acks=all and idempotence. The collector does what it does for a
real app: reads and validates every event, keys it by user id, produces it, and answers each batch only once
Kafka has acknowledged all of its events. The client is aiohttp in this process, keeping ``CONCURRENCY``
requests in flight, on the same cores as the collector (one `pulse collect` process) and the broker.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import aiohttp
import httpx
import orjson

from pulse.config import Settings
from pulse.errors import PulseError
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.traffic import Traffic, TrafficConfig
from pulse.stack.private import free_port
from pulse.topics import ensure_topics, input_topics

BATCH = 100
CONCURRENCY = 32


@dataclass(frozen=True)
class Throughput:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass(frozen=True)
class Latency:
    rate: float  # offered, events/s
    p50_ms: float
    p99_ms: float
    answered: int


def bodies(count: int, seed: int = 0) -> list[bytes]:
    """``count`` generated events in batches of ``BATCH``, as `pulse.js` posts them: stamped with the device's
    clock at sending, so the collector corrects every event's time."""
    now = int(time.time() * 1000)
    traffic = Traffic(TrafficConfig(seed=11 + seed, rate=100_000, start_ms=now - 60_000))
    values = [record[2] for _, record in zip(range(count), Chaos(traffic, ChaosConfig()), strict=False)]
    batches = (b",".join(values[i:i + BATCH]) for i in range(0, len(values), BATCH))
    return [b'{"sent_at":%d,"events":[%s]}' % (now, events) for events in batches]


class Collector:
    """One `pulse collect` process on a fresh topic, stopped and the topic left for the caller to drop."""

    def __init__(self, settings: Settings, partitions: int, topic: str | None = None) -> None:
        self.topic = topic or f"pulse.bench.collect-{uuid.uuid4().hex[:8]}"
        ensure_topics(settings.bootstrap, input_topics(self.topic, partitions))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1/batch"
        env = {k: v for k, v in os.environ.items() if k not in ("PULSE_COLLECT_KEYS", "PULSE_COLLECT_KEYS_FILE")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulse", "collect", "--topic", self.topic, "--port", str(port),
             "--rate-limit", "0"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                said = self.proc.stderr.read() if self.proc.stderr else b""
                raise PulseError(f"pulse collect exited: {said.decode(errors='replace').strip()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise PulseError("pulse collect did not start within 30 s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _post(client: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with client.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        answer = await r.read()
        if r.status != 200:
            raise PulseError(f"the collector answered {r.status}: {answer[:200].decode(errors='replace')}")
    return sum(1 for x in orjson.loads(answer)["results"] if x["result"] in ("accepted", "duplicate"))


def throughput(url: str, batches: list[bytes]) -> Throughput:
    """Every batch, ``CONCURRENCY`` requests in flight, timed from the first send to the last answer."""

    async def run() -> Throughput:
        queue, taken = list(reversed(batches)), []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as client:
            async def worker() -> None:
                while queue:
                    taken.append(await _post(client, url, queue.pop()))
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return Throughput(sum(taken), time.perf_counter() - t0)
    return asyncio.run(run())


def latency(url: str, batches: list[bytes], rate: float) -> Latency:
    """Batches sent open-loop at ``rate`` events/s (a send does not wait for the previous answer); the time to
    answer each."""

    async def run() -> Latency:
        times: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as client:
            async def one(body: bytes) -> None:
                t = time.perf_counter()
                await _post(client, url, body)
                times.append(time.perf_counter() - t)
            interval, start, tasks = BATCH / rate, time.perf_counter(), []
            for i, body in enumerate(batches):
                await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
                tasks.append(asyncio.create_task(one(body)))
            await asyncio.gather(*tasks)
        q = statistics.quantiles(times, n=100, method="inclusive")
        return Latency(rate, q[49] * 1000, q[98] * 1000, len(times) * BATCH)
    return asyncio.run(run())
