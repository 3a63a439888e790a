"""`pulse store` (Kafka aggregates → Elasticsearch) and `pulse verify` (independent recompute vs Elasticsearch)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from pulse.config import Settings
from pulse.errors import PulseError
from pulse.stack.elasticsearch import cluster_status


def _require_es(settings: Settings) -> None:
    if cluster_status(settings.es_url, timeout=5) not in {"green", "yellow"}:
        raise PulseError(f"Elasticsearch is not reachable at {settings.es_url} (is the stack up? `pulse stack up`)")


@click.command()
@click.option("--group", envvar="PULSE_GROUP", default="pulse-aggregator", show_default=True,
              help="The aggregator group whose `<group>.aggregates` documents are written.")
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True,
              help="Indices are <prefix>-windows, -users, -items, -partitions (aliases).")
@click.option("--flush-interval", envvar="PULSE_STORE_FLUSH_INTERVAL", type=click.FloatRange(0.05, 60),
              default=1.0, show_default=True, help="Seconds between bulk writes.")
@click.option("--exit-when-idle", type=click.FloatRange(0.1), default=None,
              help="Stop once no documents arrived for this many seconds (batch jobs, tests).")
@click.pass_obj
def store(settings: Settings, group: str, index_prefix: str, flush_interval: float,
          exit_when_idle: float | None) -> None:
    """Write the aggregator's documents to Elasticsearch with external versions (idempotent, exactly-once effect)."""
    from elasticsearch import Elasticsearch

    from pulse.store.indices import ensure_indices
    from pulse.store.writer import ElasticsearchWriter, WriterConfig
    from pulse.topics import require_broker

    require_broker(settings.bootstrap)
    _require_es(settings)
    ensure_indices(Elasticsearch(settings.es_url), index_prefix)
    cfg = WriterConfig(bootstrap=settings.bootstrap, es_url=settings.es_url, group=group,
                       flush_interval_s=flush_interval, index_prefix=index_prefix)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    last = [time.monotonic()]

    def progress(s: object) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            click.echo(f"store: {s.consumed:,} docs read, {s.writes:,} written, {s.stale:,} stale, "  # type: ignore[attr-defined]
                       f"{s.dead_lettered} dead-lettered, {s.retries} retries", err=True)  # type: ignore[attr-defined]

    stats = ElasticsearchWriter(cfg, on_flush=progress).run(stop, exit_when_idle)
    click.echo(f"store: stopped; {stats.writes:,} written, {stats.stale:,} stale, {stats.dead_lettered} "
               f"dead-lettered, {stats.retries} retries, {stats.outage_s:.1f}s waiting for Elasticsearch", err=True)


@click.command()
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True, help="Input topic.")
@click.option("--ledger", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Recompute from a generator ledger instead of reading the topic.")
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True)
@click.option("--windows", envvar="PULSE_WINDOWS", default="10s,1m,1h", show_default=True)
@click.option("--grace", envvar="PULSE_GRACE", default="30s", show_default=True)
@click.option("--dedup-horizon", envvar="PULSE_DEDUP_HORIZON", default=None)
@click.pass_obj
def verify(settings: Settings, topic: str, ledger: Path | None, index_prefix: str, windows: str, grace: str,
           dedup_horizon: str | None) -> None:
    """Recompute every aggregate from the input in one independent pass and diff it against Elasticsearch.

    Exits non-zero on any missing, extra or mismatched document: the user's proof of exactly-once.
    """
    from elasticsearch import Elasticsearch

    from pulse.aggregate.windows import parse_duration, parse_sizes
    from pulse.store.query import all_documents
    from pulse.verify.diff import diff_documents
    from pulse.verify.reference import recompute
    from pulse.verify.source import ledger_rows, topic_rows

    _require_es(settings)
    grace_ms = parse_duration(grace)
    horizon = parse_duration(dedup_horizon) if dedup_horizon else grace_ms
    console = Console(stderr=True)
    with console.status("recomputing from the input"):
        rows = ledger_rows(ledger) if ledger else topic_rows(settings.bootstrap, topic)
        expected = recompute(rows, parse_sizes(windows), grace_ms, horizon)
    with console.status("reading Elasticsearch"):
        actual = dict(all_documents(Elasticsearch(settings.es_url), index_prefix))
    diff = diff_documents(expected, actual)
    table = Table(title=f"pulse verify: {expected.produced:,} input records")
    for col in ("documents", "checked", "matched", "missing", "extra", "mismatched"):
        table.add_column(col, justify="right" if col != "documents" else "left")
    table.add_row("all", f"{diff.checked:,}", f"{diff.matched:,}", f"{len(diff.missing):,}", f"{len(diff.extra):,}",
                  f"{len(diff.mismatched):,}")
    for kind, n in sorted(diff.by_kind.items()):
        table.add_row(f"  {kind}", f"{n:,}", "", "", "", "")
    Console().print(table)
    click.echo(f"records: {expected.accepted:,} accepted, {expected.dead_lettered:,} dead-lettered, "
               f"{expected.late:,} late, {expected.duplicates:,} duplicates")
    if not diff.ok:
        click.echo(diff.summary(10), err=True)
        sys.exit(1)
    click.echo("OK: Elasticsearch equals the independent recompute")
