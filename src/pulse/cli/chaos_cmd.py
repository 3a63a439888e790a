"""`pulse chaos` (what `make chaos` calls): a bounded fault run on a private stack, ending in `pulse verify`."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.table import Table

from pulse.cli.durations import Duration
from pulse.cli.output import table_console
from pulse.config import Settings


@click.command()
@click.option("--rate", envvar="PULSE_CHAOS_RATE", type=click.FloatRange(1), default=10_000.0, show_default=True,
              help="Live events per second offered by the generator [env PULSE_CHAOS_RATE].")
@click.option("--seconds", envvar="PULSE_CHAOS_SECONDS", type=Duration(30), default="3m",
              show_default=True, help="How long traffic and faults run [env PULSE_CHAOS_SECONDS].")
@click.option("--brokers", envvar="PULSE_CHAOS_BROKERS", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Kafka nodes of the private stack; with 3, the broker faults are SIGKILLs of the aggregator's "
                   "transaction coordinator and of the busiest leader, then a rolling restart "
                   "[env PULSE_CHAOS_BROKERS].")
@click.pass_obj
def chaos(settings: Settings, rate: float, seconds: float, brokers: int) -> None:
    """Run the whole pipeline under faults on a private Kafka and Elasticsearch, then prove it exact.

    Traffic has 1 % records up to 2 days late (counted as corrections), 0.2 % beyond the correction horizon, 3 %
    duplicate, 1 % invalid and 5 % disordered records, 30 % of the records have no key
    (a random partition: the aggregator forwards them to the partition that owns their user) and 30 % are
    partitioned by CRC-32 as librdkafka clients do. Meanwhile an
    aggregator is SIGKILLed twice (once while a second instance is in the group), the second instance joins and
    leaves, the writer is SIGKILLed, and the broker and Elasticsearch are each stopped for 15 s. With --brokers 3
    the broker is a cluster: the broker coordinating the aggregator's transactions and the one leading most input
    partitions are each SIGKILLed and restarted 30 s later, then every broker is restarted in turn (the next once
    every replica is back in sync), and the longest the aggregator committed nothing meanwhile is given (use
    --seconds 6m or more). It ends with `pulse
    verify` exact, every delivered record counted once and no stage ended but as told to (a crash the drain would
    hide); exit status 1 otherwise. The private stack (own ports,
    under PULSE_HOME/chaos) is removed at the end; logs stay in PULSE_HOME/logs/chaos-<time>/.
    """
    from pulse.bench.chaos import run_chaos

    console = Console(stderr=True)
    logs = settings.home / "logs" / time.strftime("chaos-%Y%m%d-%H%M%S")
    report = run_chaos(settings, rate, seconds, logs, say=lambda m: console.print(f"chaos: {m}"), brokers=brokers)
    table = Table(title=f"pulse chaos: {rate:,.0f} events/s offered for {seconds:.0f} s, {brokers} broker(s)")
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in (("produced", report.produced), ("delivered (acked)", report.delivered),
                         ("in the input topic", report.in_topic), *report.counted.items(),
                         (" + ".join(report.counted), sum(report.counted.values())),
                         ("of those, forwarded (not keyed by user id)", report.forwarded)):
        table.add_row(label.replace("_", "-"), f"{value:,}")
    table.add_row("pulse verify", "exact" if report.verify_ok else "DIFFERENCES")
    table.add_row("pulse verify --follow (window documents checked during the run)",
                  f"{report.follow_checked:,}, " + ("exact" if report.follow_differences == 0 else
                                                    "DID NOT CATCH UP" if report.follow_differences < 0 else
                                                    f"{report.follow_differences:,} DIFFERENCES"))
    if report.rolling_stall_s is not None:
        table.add_row("longest the aggregator committed nothing in the rolling restart",
                      f"{report.rolling_stall_s:.1f} s")
    table.add_row("stages that ended unasked", "; ".join(report.failures) or "none")
    table_console().print(table)
    for at, what in report.faults:
        click.echo(f"  {at:6.1f}s  {what}")
    click.echo(f"logs: {logs}")
    if not report.exact:
        click.echo("chaos: NOT exact; see the verify log", err=True)
        sys.exit(1)
    click.echo("chaos: exact")
