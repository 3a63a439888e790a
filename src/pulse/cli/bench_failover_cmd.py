"""`pulse bench failover`: a partition's dark time and restore time when its aggregator dies (registered on the
`pulse bench` group)."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.table import Table

from pulse.cli.bench_cmd import bench, on_stack
from pulse.cli.output import emit, json_option, table_console
from pulse.config import Settings

DARK_LIMIT_S = 10.0


@bench.command("failover")
@click.option("--count", type=click.IntRange(10_000), default=3_000_000, show_default=True,
              help="Events built into the state before the failover (as `pulse bench memory`: short sessions, "
                   "so most carry a new user).")
@click.option("--users", type=click.IntRange(1000), default=2_000_000, show_default=True,
              help="User population the generator draws from (uniformly).")
@click.option("--rate", type=click.FloatRange(1), default=2_000.0, show_default=True,
              help="Live events per second while aggregator a is SIGKILLed.")
@json_option
@click.pass_obj
@on_stack
def failover(settings: Settings, count: int, users: int, rate: float, as_json: bool) -> None:
    """How long each partition's aggregates stop updating when its aggregator is SIGKILLed and a second instance
    takes over: from the SIGKILL to its first new document searchable in Elasticsearch (limit 10 s), with each
    partition's restore time, at about a million users of state and default settings."""
    from pulse.bench import failover as bench_failover

    logs = settings.home / "logs" / time.strftime("bench-failover-%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    with console.status("failover") as spinner:
        r = bench_failover.run(settings, count, users, rate, logs, say=lambda m: spinner.update(f"failover: {m}"))
    table = Table(title=f"pulse bench failover: {r.users:,} users of state from {r.events:,} events, "
                        f"{r.rate:,.0f} events/s live, session timeout {r.session_timeout_s:g} s")
    for col in ("partition", "dark s", "limit s", "", "state back after s", "keys restored"):
        table.add_column(col, justify="right")
    for p in r.partitions:
        dark = "-" if p.dark_s is None else f"{p.dark_s:.1f}"
        meets = p.dark_s is not None and p.dark_s <= DARK_LIMIT_S
        table.add_row(str(p.partition), dark, f"{DARK_LIMIT_S:g}", "meets" if meets else "MISSES",
                      "-" if p.restore_s is None else f"{p.restore_s:.2f}",
                      "-" if p.keys is None else f"{p.keys:,}")

    # a partition's restore time runs from the start of the restore (partitions assigned together restore
    # together), so the last one's is the whole restore's
    restore_s = max((p.restore_s or 0.0 for p in r.partitions), default=0.0)
    per_gb = restore_s / (r.restored_bytes / 1024**3) if r.restored_bytes else None

    def people() -> None:
        table_console().print(table)
        if per_gb is not None and r.restored_bytes:
            click.echo(f"b restored a's {r.restored_bytes / 1024**2:,.0f} MiB of state (a's pulse_state_bytes) in "
                       f"{restore_s:.1f} s: {per_gb:.1f} s per GiB")
        click.echo("dark: from the SIGKILL to the partition's first new document searchable (the group's session "
                   "timeout, the rebalance, b's restore, its first flush, the writer and a refresh); "
                   f"logs: {logs}")

    emit(as_json, {"bench": "failover", "events": r.events, "users": r.users, "rate": r.rate,
                   "session_timeout_s": r.session_timeout_s, "limit_s": DARK_LIMIT_S,
                   "partitions": [vars(p) for p in r.partitions], "worst_dark_s": r.worst_dark_s,
                   "restored_bytes": r.restored_bytes, "restore_s_per_gib": per_gb}, people)
