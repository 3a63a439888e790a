"""`pulse run` (what `make run` calls): the whole pipeline on this machine until Ctrl-C.

It brings the stack up (if needed), creates topics, then starts each pipeline stage as a child process with
its own log file under the Pulse home. Ctrl-C stops the children, and the stack too if this run started it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import click

from pulse.config import Settings
from pulse.errors import PulseError
from pulse.stack import manager
from pulse.stack.process import interrupt, port_in_use
from pulse.store.indices import current_generation, ensure_indices
from pulse.store.lineage import check_source
from pulse.topics import ensure_topics, input_topics

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before restarting a stage that died, longer each time it dies again soon after starting."""
STEADY_S = 60.0
"""A stage that ran this long before dying is restarted after the shortest wait again."""


@dataclass
class Stage:
    name: str
    argv: Callable[[], list[str]]  # built at each start (the generator takes a fresh seed: new event ids)
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0  # deaths in a row, each soon after its start
    due: float | None = None  # when to start it again, after it died

    def start(self, env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.started_at, self.due = time.monotonic(), None

    def supervise(self, env: dict[str, str], say: Callable[[str], None]) -> None:
        """Restart the stage if it died, after a backoff: one stage failing (a broker restart it could not ride
        out, a bug) must not stop the others, which wait for it."""
        now = time.monotonic()
        if self.due is not None:
            if now >= self.due:
                self.restarts += 1
                self.start(env)
                say(f"{self.name:<14} restarted (restart {self.restarts})")
            return
        if self.proc is None or self.proc.poll() is None:
            return
        self.failures = 1 if now - self.started_at >= STEADY_S else self.failures + 1
        wait = RESTART_BACKOFF_S[min(self.failures, len(RESTART_BACKOFF_S)) - 1]
        self.due = now + wait
        last = self.tail(1).strip() or "(no output)"
        say(f"{self.name:<14} exited with {self.proc.returncode}; restarting in {wait:.0f}s. Last log line: {last}")

    def stop(self) -> None:
        if self.proc:
            interrupt(self.proc, 20)

    def tail(self, lines: int = 10) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


GENERATE_SUMMARY = "generate-summary.jsonl"
"""The generator stage's summaries, one line each time it ends (`pulse generate --summary-json`), beside its log."""
STAGES = ("generate", "collect", "aggregate", "store", "archive", "dashboard", "verify")


def metrics_ports(first: int, taken: Collection[int]) -> dict[str, int]:
    """Each stage's metrics port: ``first`` and up, skipping ``taken`` (the dashboard's and the collector's) and
    ports in use."""
    ports: dict[str, int] = {}
    port = first
    for stage in STAGES:
        while port in taken or port_in_use(port):
            port += 1
        ports[stage] = port
        port += 1
    return ports


def pipeline_stages(settings: Settings, rate: float, dashboard_port: int, metrics: dict[str, int],
                    archive: bool = True, verify: bool = False, collect_port: int | None = None) -> list[Stage]:
    """``collect_port`` None: no collector."""
    logs = settings.home / "logs"
    py = [sys.executable, "-m", "pulse"]

    def observed(stage: str) -> list[str]:
        return ["--metrics-addr", f"127.0.0.1:{metrics[stage]}"]

    def command(*args: str) -> Callable[[], list[str]]:
        return lambda: [*py, *args, *observed(args[0])]

    def generate() -> list[str]:
        return [*py, "generate", "--rate", str(rate), "--seed", str(secrets.randbits(31)), "--no-progress",
                "--summary-json", str(logs / GENERATE_SUMMARY),
                "--disorder-fraction", "0.01", "--duplicate-fraction", "0.005", "--late-fraction", "0.002",
                "--invalid-fraction", "0.002", *observed("generate")]

    stages = [
        Stage("generate", generate, logs / "generate.log"),
        Stage("collect", command("collect", "--port", str(collect_port)), logs / "collect.log"),
        Stage("aggregate", command("aggregate"), logs / "aggregate.log"),
        Stage("store", command("store"), logs / "store.log"),
        Stage("archive", command("archive"), logs / "archive.log"),
        Stage("dashboard", command("dashboard", "--port", str(dashboard_port),
                                   *(["--collectors", f"http://127.0.0.1:{collect_port}"] if collect_port else [])),
              logs / "dashboard.log"),
        Stage("verify", command("verify", "--follow"), logs / "verify.log"),
    ]
    wanted = {"archive": archive, "verify": verify, "collect": collect_port is not None}
    return [s for s in stages if wanted.get(s.name, True)]


def _interrupt(*_args: object) -> None:
    """SIGTERM stops the pipeline the same way as Ctrl-C."""
    raise KeyboardInterrupt


@click.command("run")
@click.option("--rate", type=click.FloatRange(0.1), default=200.0, show_default=True, envvar="PULSE_GEN_RATE",
              help="Generator events per second.")
@click.option("--dashboard-port", envvar="PULSE_DASHBOARD_PORT", type=click.IntRange(1, 65535), default=8050,
              show_default=True)
@click.option("--group", envvar="PULSE_GROUP", default="pulse-aggregator", show_default=True,
              help="Aggregator consumer group (names its changelog and aggregates topics).")
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True)
@click.option("--keep-stack", is_flag=True, help="Leave Kafka and Elasticsearch running on exit.")
@click.option("--archive/--no-archive", envvar="PULSE_RUN_ARCHIVE", default=True, show_default=True,
              help="Run the raw event archive (a user's timeline and raw events in Kibana); every dashboard number "
                   "comes from the aggregates either way.")
@click.option("--metrics-port", envvar="PULSE_METRICS_PORT", type=click.IntRange(1, 65535), default=9464,
              show_default=True,
              help="First port of the stages' Prometheus endpoints (/metrics, /healthz, /readyz), one per stage "
                   "from here up, skipping taken ports; printed at start [env PULSE_METRICS_PORT].")
@click.option("--verify/--no-verify", envvar="PULSE_RUN_VERIFY", default=False, show_default=True,
              help="Also run `pulse verify --follow`: every window checked against an independent recompute once "
                   "final; the dashboard shows how far it got, or the first difference.")
@click.option("--collect/--no-collect", envvar="PULSE_RUN_COLLECT", default=True, show_default=True,
              help="Run `pulse collect`, the HTTP front door for your own app's events (loopback, no key) "
                   "[env PULSE_RUN_COLLECT].")
@click.option("--collect-port", envvar="PULSE_COLLECT_PORT", type=click.IntRange(1, 65535), default=8060,
              show_default=True, help="The collector's port [env PULSE_COLLECT_PORT].")
@click.pass_obj
def run(settings: Settings, rate: float, dashboard_port: int, group: str, index_prefix: str,
        keep_stack: bool, archive: bool, metrics_port: int, verify: bool, collect: bool, collect_port: int) -> None:
    """Run the whole pipeline locally until Ctrl-C: stack, setup, generator, aggregator, Elasticsearch writer,
    event archive and the live dashboard (its URL is printed)."""
    before = {s.name: s.pid for s in manager.status(settings)}
    for r in manager.up(settings, progress=lambda msg: click.echo(f"  {msg}", err=True)):
        click.echo(f"{r.name:<14} {r.address}")
    started_stack = any(before[n] is None for n in before)
    if port_in_use(dashboard_port):
        raise PulseError(f"port {dashboard_port} is already in use (pass --dashboard-port or set PULSE_DASHBOARD_PORT)")
    if collect and port_in_use(collect_port):
        raise PulseError(f"port {collect_port} is already in use (pass --collect-port, set PULSE_COLLECT_PORT, or "
                         "--no-collect)")
    for name, state in ensure_topics(settings.bootstrap, input_topics(settings.topic, settings.partitions)):
        click.echo(f"topic {name:<24} {state}")
    es = settings.es.client()
    ensure_indices(es, index_prefix)
    lineage = check_source(es, settings.bootstrap, settings.topic, group, current_generation(es, index_prefix),
                           index_prefix)
    click.echo(f"source topic id {lineage}")
    ports = metrics_ports(metrics_port, {dashboard_port, collect_port})
    stages = pipeline_stages(settings, rate, dashboard_port, ports, archive, verify, collect_port if collect else None)
    env = dict(os.environ) | {"PULSE_HOME": str(settings.home), "PULSE_TOPIC": settings.topic, "PULSE_GROUP": group,
                              "PULSE_INDEX_PREFIX": index_prefix}
    signal.signal(signal.SIGTERM, _interrupt)
    # A shell's background job (`cmd &`) inherits SIGINT as ignored; an explicit SIGINT must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for stage in stages:
            stage.start(env)
            click.echo(f"{stage.name:<14} running (log: {stage.log}; metrics: "
                       f"http://127.0.0.1:{ports[stage.name]}/metrics)")
        click.echo(f"\ndashboard: http://127.0.0.1:{dashboard_port}/   (Kibana-free; API docs at /docs)")
        if collect:
            click.echo(f"collector: http://127.0.0.1:{collect_port}/v1/batch   (your app's events; docs/collect.md)")
        click.echo("pipeline running; Ctrl-C stops it")
        while True:
            for stage in stages:
                stage.supervise(env, lambda line: click.echo(line, err=True))
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping…", err=True)
    finally:
        for stage in reversed(stages):
            stage.stop()
        if started_stack and not keep_stack:
            for name, _ in manager.down(settings):
                click.echo(f"{name:<14} stopped", err=True)
