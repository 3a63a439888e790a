"""`pulse bench verify`: records/s and peak resident memory of `pulse verify` over inputs of growing size.

Each step pre-produces its input (generated traffic at 1,000 events/s of event time ending about now, with 1 %
each of invalid, duplicate, late and out-of-order events), aggregates it with `pulse aggregate` and writes the
documents with `pulse store`, both until idle; then `pulse verify --json` runs alone and is timed, its resident
set (with its worker processes) sampled throughout. Memory that follows the live state stays flat from step to
step while the input grows; memory that follows the input grows with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pulse.bench.aggregate import prepare_input
from pulse.bench.e2e import process_tree
from pulse.bench.memory import rss
from pulse.config import Settings
from pulse.errors import PulseError

PARTITIONS = 6
SAMPLE_EVERY_S = 0.2


@dataclass(frozen=True)
class VerifyStep:
    records: int
    seconds: float
    peak_rss_bytes: int  # `pulse verify` and its workers together
    ok: bool
    documents: int

    @property
    def rate(self) -> float:
        return self.records / max(self.seconds, 1e-9)


def _pulse(*args: str) -> list[str]:
    return [sys.executable, "-m", "pulse", *args]


def _run(argv: list[str], log: Path, timeout: float) -> None:
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
                              check=False)
    if done.returncode != 0:
        raise PulseError(f"`pulse {argv[3]}` exited with {done.returncode}; see {log}")


def step(settings: Settings, records: int, log: Path, workers: int, crc32_keys: float = 0.0,
         timeout: float = 3600) -> VerifyStep:
    """One input of ``records`` records (``crc32_keys`` of them partitioned as librdkafka does), produced,
    aggregated, stored, then verified and measured."""
    tag = uuid.uuid4().hex[:6]
    topic, group, prefix = f"pulse.bench.verify-{tag}", f"bench-verify-{tag}", f"bench-verify-{tag}"
    prepare_input(settings, topic, records, PARTITIONS, start_ms=int(time.time() * 1000) - records,
                  crc32_keys=crc32_keys)
    _run(_pulse("aggregate", "--topic", topic, "--group", group, "--exit-when-idle", "2"), log, timeout)
    _run(_pulse("store", "--topic", topic, "--group", group, "--index-prefix", prefix, "--exit-when-idle", "2"), log,
         timeout)
    argv = _pulse("verify", "--topic", topic, "--group", group, "--index-prefix", prefix, "--json",
                  "--workers", str(workers))
    peak = 0
    t0 = time.monotonic()
    with log.open("ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                peak = max(peak, sum(rss(pid) for pid in process_tree(proc.pid)))
                if time.monotonic() - t0 > timeout:
                    raise PulseError(f"`pulse verify` did not finish within {timeout:.0f}s; see {log}")
                time.sleep(SAMPLE_EVERY_S)
        finally:
            if proc.poll() is None:
                proc.kill()
        out = proc.communicate()[0]
    seconds = time.monotonic() - t0
    try:
        report = json.loads(out)
    except ValueError:
        raise PulseError(f"`pulse verify` printed no report (exit {proc.returncode}); see {log}") from None
    if not report["ok"]:  # what differed, for the log the failure points to
        with log.open("a") as f:
            f.write(json.dumps(report, indent=1)[:20_000] + "\n")
    es = settings.es.client()
    es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-*")
    return VerifyStep(report["input_records"], seconds, peak, bool(report["ok"]), report["documents"]["checked"])


def run(settings: Settings, sizes: list[int], log: Path, workers: int,
        say: Callable[[str], None] = lambda _: None, crc32_keys: float = 0.0) -> list[VerifyStep]:
    out = []
    for n in sizes:
        say(f"{n:,} records: producing, aggregating, storing, then verifying")
        out.append(step(settings, n, log, workers, crc32_keys))
        s = out[-1]
        with log.open("a") as f:
            f.write(f"bench verify: {s.records:,} records in {s.seconds:.1f}s ({s.rate:,.0f}/s), peak RSS "
                    f"{s.peak_rss_bytes / 1024**2:,.0f} MiB, {'exact' if s.ok else 'NOT exact'}\n")
    return out
