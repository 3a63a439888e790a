"""`pulse run` (what `make run` calls): the whole pipeline on this machine until Ctrl-C.

It brings the stack up (if needed), creates topics, then starts each pipeline stage as a child process with
its own log file under the Pulse home. Ctrl-C stops the children, and the stack too if this run started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
from elasticsearch import Elasticsearch

from pulse.config import Settings
from pulse.errors import PulseError
from pulse.stack import manager
from pulse.stack.process import interrupt, port_in_use
from pulse.store.indices import current_generation, ensure_indices
from pulse.store.lineage import check_source
from pulse.topics import ensure_topics, input_topics


@dataclass
class Stage:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)

    def stop(self) -> None:
        if self.proc:
            interrupt(self.proc, 20)

    def tail(self, lines: int = 10) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def pipeline_stages(settings: Settings, rate: float, dashboard_port: int) -> list[Stage]:
    logs = settings.home / "logs"
    py = [sys.executable, "-m", "pulse"]
    return [
        Stage("generate", [*py, "generate", "--rate", str(rate), "--no-progress", "--disorder-fraction", "0.01",
                           "--duplicate-fraction", "0.005", "--late-fraction", "0.002", "--invalid-fraction", "0.002"],
              logs / "generate.log"),
        Stage("aggregate", [*py, "aggregate"], logs / "aggregate.log"),
        Stage("store", [*py, "store"], logs / "store.log"),
        Stage("archive", [*py, "archive"], logs / "archive.log"),
        Stage("dashboard", [*py, "dashboard", "--port", str(dashboard_port)], logs / "dashboard.log"),
    ]


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
@click.pass_obj
def run(settings: Settings, rate: float, dashboard_port: int, group: str, index_prefix: str,
        keep_stack: bool) -> None:
    """Run the whole pipeline locally until Ctrl-C: stack, setup, generator, aggregator, Elasticsearch writer,
    event archive and the live dashboard (its URL is printed)."""
    before = {s.name: s.pid for s in manager.status(settings)}
    for r in manager.up(settings, progress=lambda msg: click.echo(f"  {msg}", err=True)):
        click.echo(f"{r.name:<14} {r.address}")
    started_stack = any(before[n] is None for n in before)
    if port_in_use(dashboard_port):
        raise PulseError(f"port {dashboard_port} is already in use (pass --dashboard-port or set PULSE_DASHBOARD_PORT)")
    for name, state in ensure_topics(settings.bootstrap, input_topics(settings.topic, settings.partitions, 168)):
        click.echo(f"topic {name:<24} {state}")
    es = Elasticsearch(settings.es_url)
    ensure_indices(es, index_prefix)
    lineage = check_source(es, settings.bootstrap, settings.topic, group, current_generation(es, index_prefix),
                           index_prefix)
    click.echo(f"source topic id {lineage}")
    stages = pipeline_stages(settings, rate, dashboard_port)
    env = dict(os.environ) | {"PULSE_HOME": str(settings.home), "PULSE_TOPIC": settings.topic, "PULSE_GROUP": group,
                              "PULSE_INDEX_PREFIX": index_prefix}
    signal.signal(signal.SIGTERM, _interrupt)
    # A shell's background job (`cmd &`) inherits SIGINT as ignored; an explicit SIGINT must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for stage in stages:
            stage.start(env)
            click.echo(f"{stage.name:<14} running (log: {stage.log})")
        click.echo(f"\ndashboard: http://127.0.0.1:{dashboard_port}/   (Kibana-free; API docs at /docs)")
        click.echo("pipeline running; Ctrl-C stops it")
        while True:
            for stage in stages:
                if stage.proc and stage.proc.poll() is not None:
                    raise PulseError(f"{stage.name} exited with {stage.proc.returncode}; last log lines:\n"
                                     f"{stage.tail()}")
            time.sleep(1.0)
    except KeyboardInterrupt:
        click.echo("stopping…", err=True)
    finally:
        for stage in reversed(stages):
            stage.stop()
        if started_stack and not keep_stack:
            for name, _ in manager.down(settings):
                click.echo(f"{name:<14} stopped", err=True)
