"""`pulse bench …`: throughput measured side by side with a peer in the same run (ratios, not timings)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from pulse.config import Settings


@click.group()
def bench() -> None:
    """Benchmarks against peers on the real local stack. They print ratios; no absolute targets."""


@bench.command()
@click.option("--count", type=click.IntRange(1000), default=500_000, show_default=True, help="Records per contender.")
@click.option("--partitions", type=click.IntRange(1), default=6, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Alternate the contenders this many times and keep each one's best.")
@click.pass_obj
def produce(settings: Settings, count: int, partitions: int, rounds: int) -> None:
    """Events/s from generation to acknowledged delivery vs Kafka's ProducerPerformance (target ratio >= 0.5)."""
    from pulse.bench.produce import run_kafka_tool, run_pulse

    console = Console(stderr=True)
    best: dict[str, object] = {}
    for i in range(rounds):
        with console.status(f"round {i + 1}/{rounds}: pulse generate → Kafka"):
            ours = run_pulse(settings, count, partitions)
        with console.status(f"round {i + 1}/{rounds}: ProducerPerformance ({round(ours.record_bytes)} B records)"):
            theirs = run_kafka_tool(settings, count, partitions, round(ours.record_bytes))
        for r in (ours, theirs):
            if r.name not in best or r.rate > best[r.name].rate:  # type: ignore[attr-defined]
                best[r.name] = r
    ours, theirs = best["pulse generate"], best["kafka ProducerPerformance"]
    table = Table(title=f"pulse bench produce: {count:,} records, acks=all, idempotent, lz4, {partitions} partitions")
    table.add_column("contender")
    table.add_column("records/s", justify="right")
    table.add_column("record bytes", justify="right")
    for r in (ours, theirs):
        table.add_row(r.name, f"{r.rate:,.0f}", f"{r.record_bytes:.0f}")  # type: ignore[attr-defined]
    Console().print(table)
    ratio = ours.rate / theirs.rate  # type: ignore[attr-defined]
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    click.echo(f"ratio pulse/kafka = {ratio:.2f} ({verdict} the >= 0.5 target)")
