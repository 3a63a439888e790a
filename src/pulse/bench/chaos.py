"""`pulse chaos`: a bounded fault run on a private stack, ending in `pulse verify`.

Live traffic with late, duplicate, invalid and disordered records, 30 % of them without a key, flows through the
whole pipeline while aggregators are SIGKILLed as a second instance joins and leaves, the writer is SIGKILLed, and
the broker and Elasticsearch are each restarted once, with `pulse verify --follow` checking windows throughout. Then
everything is drained and checked: `pulse verify` exact, the follower caught up without a difference, and every
record the generator delivered counted exactly once (accepted + corrected + dead-lettered + late + duplicates).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pulse.aggregate.model import OUTCOMES
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.generate.summary import read_summaries
from pulse.stack.private import PrivateStack, free_port, private_stack

TRAFFIC = ("--late-fraction", "0.01", "--late-max", "2d", "--too-late-fraction", "0.002",
           "--duplicate-fraction", "0.03", "--invalid-fraction", "0.01",
           "--disorder-fraction", "0.05", "--null-key-fraction", "0.3", "--crc32-key-fraction", "0.3")


@dataclass
class ChaosReport:
    rate: float
    seconds: float
    faults: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, what)
    produced: int = 0
    delivered: int = 0
    in_topic: int = 0  # input records `pulse verify` read
    counted: dict[str, int] = field(default_factory=dict)  # by outcome (OUTCOMES)
    forwarded: int = 0  # records counted by the partition that owns their user, not where they were read
    verify_ok: bool = False
    verify_output: str = ""
    follow_checked: int = 0  # window documents `pulse verify --follow` compared during the run
    follow_differences: int = -1  # the differences it found (-1: it did not catch up with the input)

    @property
    def exact(self) -> bool:
        return (self.verify_ok and self.produced == self.delivered == self.in_topic == sum(self.counted.values())
                and self.follow_checked > 0 and self.follow_differences == 0)


class _Stage:
    """One `pulse` process of the run, logging to its own file."""

    def __init__(self, stack: PrivateStack, env: dict[str, str], log: Path, *args: str) -> None:
        self._argv = [sys.executable, "-m", "pulse", *args]
        self._env, self._log = stack.env | env, log
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self._log.open("ab") as out:
            return subprocess.Popen(self._argv, env=self._env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    def kill_and_restart(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc = self._start()

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)


def run_chaos(settings: Settings, rate: float, seconds: float, logs: Path,
              say: Callable[[str], None] = lambda _m: None) -> ChaosReport:
    """The whole run on a private stack under ``<home>/chaos`` (started and removed here)."""
    report = ChaosReport(rate, seconds)
    logs.mkdir(parents=True, exist_ok=True)
    say("starting a private Kafka and Elasticsearch")
    with private_stack(settings, "chaos", kafka_heap="1g", es_heap="1g") as stack:
        env = {"PULSE_TOPIC": "chaos.events", "PULSE_GROUP": "chaos", "PULSE_INDEX_PREFIX": "chaos"}
        made = stack.pulse("setup", **env)
        if made.returncode != 0:
            raise PulseError(f"setup failed: {made.stderr.strip()[-300:]}")
        port = free_port()
        follower = _Stage(stack, env, logs / "verify-follow.log", "verify", "--follow", "--metrics-addr",
                          f"127.0.0.1:{port}", "--state-file", str(logs / "verify-follow.json"))
        try:
            _faults(stack, env, report, logs, say)
            _drain_and_check(stack, env, report, logs, say)
            _follower_caught_up(port, report, say)
        finally:
            follower.stop()
    return report


def _faults(stack: PrivateStack, env: dict[str, str], report: ChaosReport, logs: Path,
            say: Callable[[str], None]) -> None:
    t0 = time.monotonic()

    def mark(what: str) -> None:
        report.faults.append((round(time.monotonic() - t0, 1), what))
        say(f"{report.faults[-1][0]:6.1f}s  {what}")

    summaries = logs / "generate-summary.jsonl"
    generator = _Stage(stack, env, logs / "generate.log", "generate", "--rate", str(report.rate), "--duration",
                       str(report.seconds), "--no-progress", "--summary-json", str(summaries), *TRAFFIC)
    first = _Stage(stack, env, logs / "aggregate-a.log", "aggregate", "--instance", "chaos-a")
    writer = _Stage(stack, env, logs / "store.log", "store")
    mark("generator, aggregator a and writer started")
    second: _Stage | None = None
    plan: list[tuple[float, str, Callable[[], None]]] = [
        (0.15, "SIGKILL aggregator a (restarted)", first.kill_and_restart),
        (0.25, "aggregator b joins", lambda: None),
        (0.35, "SIGKILL aggregator a while b is in the group (restarted)", first.kill_and_restart),
        (0.45, "broker stopped for 15 s, then started", lambda: _down(stack, "kafka", 15)),
        (0.60, "aggregator b leaves", lambda: None),
        (0.65, "SIGKILL the writer (restarted)", writer.kill_and_restart),
        (0.75, "Elasticsearch stopped for 15 s, then started", lambda: _down(stack, "elasticsearch", 15)),
    ]
    try:
        for at, what, act in plan:
            time.sleep(max(0.0, t0 + at * report.seconds - time.monotonic()))
            if what == "aggregator b joins":
                second = _Stage(stack, env, logs / "aggregate-b.log", "aggregate", "--instance", "chaos-b")
            elif what == "aggregator b leaves" and second is not None:
                second.stop()
            else:
                act()
            mark(what)
        try:
            code = generator.proc.wait(report.seconds + 600)
        except subprocess.TimeoutExpired:
            raise PulseError("the generator had not finished 10 minutes after its end; see "
                             f"{logs / 'generate.log'}") from None
        if code != 0:
            raise PulseError(f"the generator failed; see {logs / 'generate.log'}")
        mark("generator finished")
        ran = read_summaries(summaries)
        if not ran:
            raise PulseError(f"the generator wrote no summary; see {logs / 'generate.log'}")
        report.produced, report.delivered = ran[-1]["produced"], ran[-1]["delivered"]
        for stage in (first, writer):
            stage.stop()
        mark("aggregator a and writer stopped")
    finally:  # on a failure too: nothing of the run is left behind
        for stage in (generator, first, writer, second):
            if stage is not None and stage.proc.poll() is None:
                stage.stop(timeout=30)


def _down(stack: PrivateStack, service: str, seconds: float) -> None:
    with stack.stopped(service):
        time.sleep(seconds)


def _drain_and_check(stack: PrivateStack, env: dict[str, str], report: ChaosReport, logs: Path,
                     say: Callable[[str], None]) -> None:
    say("draining: aggregator and writer until idle")
    for verb in ("aggregate", "store"):
        done = stack.pulse(verb, "--exit-when-idle", "2", timeout=900, **env)
        (logs / f"drain-{verb}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise PulseError(f"draining with `pulse {verb}` failed; see {logs / f'drain-{verb}.log'}")
    say("verifying against an independent recompute of the topic")
    verify = stack.pulse("verify", "--json", timeout=900, **env)
    report.verify_ok, report.verify_output = verify.returncode == 0, verify.stdout + verify.stderr
    (logs / "verify.log").write_text(report.verify_output)
    try:
        found = json.loads(verify.stdout)
    except ValueError:
        return
    records = found["records"]
    report.in_topic, report.forwarded = found["input_records"], records["forwarded"]
    report.counted = {n: records[n] for n in OUTCOMES}


def _follower_caught_up(port: int, report: ChaosReport, say: Callable[[str], None], timeout_s: float = 600) -> None:
    """Wait until `pulse verify --follow`, which ran through every fault, has walked the whole input; then take
    what it compared and found."""
    say("waiting for `pulse verify --follow` to walk the whole input")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        walked = _metric(port, "pulse_verify_input_records")
        if walked is not None and walked >= report.in_topic > 0:
            time.sleep(3)  # the round that walked the last records compares their windows before the next one
            report.follow_checked = int(_metric(port, "pulse_verify_windows_checked_total") or 0)
            report.follow_differences = int(_metric(port, "pulse_verify_mismatches_total") or 0)
            return
        time.sleep(1)


def _metric(port: int, name: str) -> float | None:
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = re.search(rf"^{name} (\S+)$", body, re.M)
    return float(found.group(1)) if found else None


