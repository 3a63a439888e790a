"""`pulse chaos`: a bounded fault run on a private stack, ending in `pulse verify`.

Live traffic with late, duplicate, invalid and disordered records, 30 % of them without a key, flows through the
whole pipeline while aggregators are SIGKILLed as a second instance joins and leaves, the writer is SIGKILLed, and
the broker and Elasticsearch are each restarted once, with `pulse verify --follow` checking windows throughout. On a
three-broker cluster the broker faults are SIGKILLs of the broker coordinating the aggregator's transactions and of
the one leading most input partitions (each restarted 30 s later), then a rolling restart of every broker. Then
everything is drained and checked: `pulse verify` exact, the follower caught up without a difference, and every
record the generator delivered counted exactly once (accepted + corrected + dead-lettered + late + duplicates).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pulse.aggregate.model import OUTCOMES
from pulse.bench.scrape import metric
from pulse.bench.stage import Stage
from pulse.bench.stall import StallWatch
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.generate.summary import read_summaries
from pulse.kafkaio import admin_client
from pulse.polling import poll_until
from pulse.stack import manager
from pulse.stack.kafka import node_name
from pulse.stack.leaders import busiest_leader, transaction_coordinator, under_replicated
from pulse.stack.private import PrivateStack, free_port, private_stack

TRAFFIC = ("--late-fraction", "0.01", "--late-max", "2d", "--too-late-fraction", "0.002",
           "--duplicate-fraction", "0.03", "--invalid-fraction", "0.01",
           "--disorder-fraction", "0.05", "--null-key-fraction", "0.3", "--crc32-key-fraction", "0.3")


BROKER_DEAD_S = 30.0  # how long a SIGKILLed broker stays dead


@dataclass
class ChaosReport:
    rate: float
    seconds: float
    brokers: int = 1
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
    rolling_stall_s: float | None = None  # longest the aggregator committed nothing in the brokers' rolling restart
    failures: list[str] = field(default_factory=list)  # stages that ended other than as the plan told them to

    @property
    def exact(self) -> bool:
        return (self.verify_ok and self.produced == self.delivered == self.in_topic == sum(self.counted.values())
                and self.follow_checked > 0 and self.follow_differences == 0 and not self.failures)


def run_chaos(settings: Settings, rate: float, seconds: float, logs: Path,
              say: Callable[[str], None] = lambda _m: None, brokers: int = 1) -> ChaosReport:
    """The whole run on a private stack under ``<home>/chaos`` (started and removed here) with ``brokers``
    Kafka nodes."""
    report = ChaosReport(rate, seconds, brokers)
    logs.mkdir(parents=True, exist_ok=True)
    say(f"starting a private Kafka ({brokers} broker(s)) and Elasticsearch")
    heap = "1g" if brokers == 1 else "512m"
    with private_stack(settings, "chaos", kafka_heap=heap, es_heap="1g", brokers=brokers) as stack:
        env = {"PULSE_TOPIC": "chaos.events", "PULSE_GROUP": "chaos", "PULSE_INDEX_PREFIX": "chaos"}
        made = stack.pulse("setup", **env)
        if made.returncode != 0:
            raise PulseError(f"setup failed: {made.stderr.strip()[-300:]}")
        port = free_port()
        follower = Stage(stack.env | env, logs / "verify-follow.log", "verify", "--follow", "--metrics-addr",
                          f"127.0.0.1:{port}", "--state-file", str(logs / "verify-follow.json"))
        try:
            _faults(stack, env, report, logs, say)
            _drain_and_check(stack, env, report, logs, say)
            _follower_caught_up(port, report, say)
        finally:
            follower.stop()
            report.failures += follower.failures
    return report


def _faults(stack: PrivateStack, env: dict[str, str], report: ChaosReport, logs: Path,
            say: Callable[[str], None]) -> None:
    t0 = time.monotonic()

    def mark(what: str, began: float | None = None) -> None:
        """Note a step at the time it began (a fault that lasts says for how long)."""
        now = time.monotonic()
        took = now - began if began is not None else 0.0
        report.faults.append((round((began or now) - t0, 1), what + (f" [{took:.0f} s]" if took >= 1 else "")))
        say(f"{report.faults[-1][0]:6.1f}s  {report.faults[-1][1]}")

    summaries = logs / "generate-summary.jsonl"
    generator = Stage(stack.env | env, logs / "generate.log", "generate", "--rate", str(report.rate), "--duration",
                       str(report.seconds), "--no-progress", "--summary-json", str(summaries), *TRAFFIC,
                      ends_itself=True)
    first = Stage(stack.env | env, logs / "aggregate-a.log", "aggregate", "--instance", "chaos-a")
    writer = Stage(stack.env | env, logs / "store.log", "store")
    mark("generator, aggregator a and writer started")
    second: Stage | None = None
    plan: list[tuple[float, str, Callable[[], str | None]]] = [
        (0.15, "SIGKILL aggregator a (restarted)", first.kill_and_restart),
        (0.25, "aggregator b joins", lambda: None),
        (0.35, "SIGKILL aggregator a while b is in the group (restarted)", first.kill_and_restart),
        (0.60, "aggregator b leaves", lambda: None),
        (0.65, "SIGKILL the writer (restarted)", writer.kill_and_restart),
        (0.75, "Elasticsearch stopped for 15 s, then started", lambda: _down(stack, "elasticsearch", 15)),
        *_broker_faults(stack, env, report),
    ]
    plan.sort(key=lambda step: step[0])
    try:
        for at, what, act in plan:
            time.sleep(max(0.0, t0 + at * report.seconds - time.monotonic()))
            began = time.monotonic()
            if what == "aggregator b joins":
                second = Stage(stack.env | env, logs / "aggregate-b.log", "aggregate", "--instance", "chaos-b")
            elif what == "aggregator b leaves" and second is not None:
                second.stop()
            else:
                what = act() or what
            mark(what, began)
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
            if stage is not None:
                stage.stop(timeout=30)
                report.failures += stage.failures


def _down(stack: PrivateStack, service: str, seconds: float) -> None:
    with stack.stopped(service):
        time.sleep(seconds)


def _broker_faults(stack: PrivateStack, env: dict[str, str],
                   report: ChaosReport) -> list[tuple[float, str, Callable[[], str | None]]]:
    """The plan's broker faults: one broker stopped, or on a cluster two SIGKILLs aimed where they hurt most and a
    rolling restart. Each act returns what it did, once it knows which broker it hit."""
    if report.brokers == 1:
        return [(0.45, "broker stopped for 15 s, then started", lambda: _down(stack, "kafka", 15))]
    admin = admin_client(stack.env["PULSE_BOOTSTRAP"])

    def kill_coordinator() -> str:
        node = node_name(transaction_coordinator(admin, f"{env['PULSE_GROUP']}-chaos-a"))
        _dead(stack, node)
        return f"SIGKILL {node}, the coordinator of aggregator a's transactions (restarted {BROKER_DEAD_S:.0f} s later)"

    def kill_busiest() -> str:
        node = node_name(busiest_leader(admin, env["PULSE_TOPIC"]))
        _dead(stack, node)
        return f"SIGKILL {node}, the leader of most input partitions (restarted {BROKER_DEAD_S:.0f} s later)"

    def rolling_restart() -> str:
        with StallWatch(stack.env["PULSE_BOOTSTRAP"], env["PULSE_GROUP"], env["PULSE_TOPIC"]) as watch:
            start = time.monotonic()
            for node in manager.brokers(stack.settings):
                _down(stack, node.name, 0)
                _in_sync(admin)  # as Kafka's documentation advises, before the next one goes down
            time.sleep(10)  # what the last restart holds up shows after it
            report.rolling_stall_s = watch.longest_stall(start, time.monotonic())
        return (f"rolling restart of all {report.brokers} brokers, one at a time (with input to read, the "
                f"aggregator committed nothing for {report.rolling_stall_s:.1f} s at most)")

    # each takes a minute or more (a broker is dead 30 s, and starts again in 15-25 s): early, so that they all
    # fall within the traffic of a run of 6 minutes
    return [(0.30, "SIGKILL the coordinator's broker", kill_coordinator),
            (0.45, "SIGKILL the busiest leader", kill_busiest), (0.62, "rolling restart", rolling_restart)]


def _in_sync(admin: AdminClient, timeout_s: float = 180) -> None:
    """Wait until every replica is back in sync (a broker that cannot be asked counts as not yet)."""
    def synced() -> bool:
        try:
            return under_replicated(admin) == 0
        except KafkaException:
            return False
    poll_until(synced, timeout_s, "every replica back in sync after a broker restarted", every_s=1)


def _dead(stack: PrivateStack, node: str) -> None:
    stack.kill(node)
    time.sleep(BROKER_DEAD_S)
    stack.start()


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
        walked = metric(port, "pulse_verify_input_records")
        if walked is not None and walked >= report.in_topic > 0:
            time.sleep(3)  # the round that walked the last records compares their windows before the next one
            report.follow_checked = int(metric(port, "pulse_verify_windows_checked_total") or 0)
            report.follow_differences = int(metric(port, "pulse_verify_mismatches_total") or 0)
            return
        time.sleep(1)
