"""`pulse stack …`: run Kafka and Elasticsearch locally as JVM processes (no Docker needed)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from pulse.cli.output import table_console
from pulse.config import Settings
from pulse.stack import manager


@click.group()
@click.option("--kafka-port", type=int, envvar="PULSE_KAFKA_PORT", help="Kafka client port [default 9092].")
@click.option("--kafka-controller-port", type=int, envvar="PULSE_KAFKA_CONTROLLER_PORT",
              help="KRaft controller port [default 9093].")
@click.option("--es-port", type=int, envvar="PULSE_ES_PORT", help="Elasticsearch HTTP port [default 9200].")
@click.option("--es-transport-port", type=int, envvar="PULSE_ES_TRANSPORT_PORT",
              help="Elasticsearch transport port [default 9300].")
@click.option("--kafka-heap", envvar="PULSE_KAFKA_HEAP", help="Kafka JVM heap [default 1g].")
@click.option("--es-heap", envvar="PULSE_ES_HEAP", help="Elasticsearch JVM heap [default 2g].")
@click.option("--kafka-version", envvar="PULSE_KAFKA_VERSION", help="org.apache.kafka:kafka_2.13 version.")
@click.option("--es-version", envvar="PULSE_ES_VERSION", help="Elasticsearch integ-test-zip version (8.x).")
@click.pass_context
def stack(ctx: click.Context, **flags: object) -> None:
    """Local services: Kafka (KRaft) and Elasticsearch, from Maven Central, under the Pulse home."""
    ctx.obj = replace(ctx.obj, **{k: v for k, v in flags.items() if v is not None})


@stack.command()
@click.option("--secure", is_flag=True, envvar="PULSE_STACK_SECURE",
              help="Make this home's stack secure: Kafka on SASL_SSL (SCRAM-SHA-512) and Elasticsearch with TLS "
                   "and authentication, certificates made on the spot; then `eval \"$(pulse stack env)\"`. "
                   "A home stays secure once made so. [env var: PULSE_STACK_SECURE]")
@click.option("--brokers", type=click.IntRange(1, 9), envvar="PULSE_STACK_BROKERS",
              help="Make this home's Kafka a cluster of N combined broker+controller nodes on every second port "
                   "from --kafka-port (a quorum of N; topics get 3 replicas, 2 in sync, where N >= 3). "
                   "A home stays the size it was made. [default 1; env var: PULSE_STACK_BROKERS]")
@click.pass_obj
def up(settings: Settings, secure: bool, brokers: int | None) -> None:
    """Download (once), start and wait for Kafka and Elasticsearch. Safe to run again."""
    console = Console(stderr=True)
    if brokers is not None and brokers % 2 == 0:
        click.echo(f"note: a quorum of {brokers} survives {brokers // 2 - 1} failed node(s), as many as one of "
                   f"{brokers - 1} does; KRaft quorums are best odd (3 or 5)", err=True)
    with console.status("starting the stack…") as spinner:
        results = manager.up(settings, progress=lambda msg: spinner.update(msg), secure=secure, brokers=brokers)
    for r in results:
        how = "started" if r.started else "already running"
        cached = "downloaded" if r.downloaded else "from cache"
        extra = f" ({cached}, ready in {r.seconds:.1f}s)" if r.started else ""
        click.echo(f"{r.name:<14} {how:<16} {r.address}{extra}")


@stack.command()
@click.pass_obj
def env(settings: Settings) -> None:
    """Print the `export PULSE_...` lines that point every Pulse command at this stack:
    eval "$(pulse stack env)". Secrets are given as *_FILE paths, never as values."""
    for name, value in manager.client_env(settings).items():
        click.echo(f"export {name}={shlex.quote(value)}")


COMPOSE_HOSTS = ("kafka", "elasticsearch", "localhost")
COMPOSE_SECRETS = ("kibana",)


@stack.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="secrets")
def secrets(directory: Path) -> None:
    """Make the certificates and passwords of the secure Compose variant in DIRECTORY (default ./secrets):
    docker compose -f docker-compose.yml -f docker-compose.secure.yml up. Nothing is made twice."""
    from pulse.stack.secure import SecureMaterial

    material = SecureMaterial(directory.resolve())
    made = not material.exists()
    material.create(hosts=COMPOSE_HOSTS, extra_secrets=COMPOSE_SECRETS, shared=True)
    click.echo(f"{'made' if made else 'kept'} the CA, a certificate for {', '.join(COMPOSE_HOSTS)} and random "
               f"passwords in {material.dir} (only you can enter it; never commit it)")


@stack.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the services this Pulse home started (by pid file); nothing else is touched."""
    for name, was_running in manager.down(settings):
        click.echo(f"{name:<14} {'stopped' if was_running else 'was not running'}")


@stack.command()
@click.option("--quiet", "-q", is_flag=True, help="Print nothing; exit 0 only if every service is healthy.")
@click.pass_obj
def status(settings: Settings, quiet: bool) -> None:
    """Show each service, its pid, address and health."""
    rows = manager.status(settings)
    if not quiet:
        table = Table("service", "version", "state", "pid", "address")
        for r in rows:
            table.add_row(r.name, r.version, r.state, str(r.pid or "-"), r.address)
        table_console().print(table)
    sys.exit(0 if all(r.healthy for r in rows) else 1)


@stack.command()
@click.argument("service")
@click.option("--follow/--no-follow", "-f", default=False, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--lines", "-n", default=50, show_default=True, help="How many lines to show.")
@click.pass_obj
def logs(settings: Settings, service: str, follow: bool, lines: int) -> None:
    """Tail a service's log file: SERVICE is kafka (kafka-2, kafka-3… in a cluster), elasticsearch or es."""
    svc = manager.service_by_name(settings, "elasticsearch" if service == "es" else service)
    path = svc.process.log_file
    if not path.exists():
        click.echo(f"no log yet at {path}", err=True)
        sys.exit(1)
    argv = ["tail", "-n", str(lines), *(["-F"] if follow else []), str(path)]
    try:
        sys.exit(subprocess.call(argv, env=os.environ))
    except KeyboardInterrupt:
        sys.exit(0)
