"""`pulse store` (Kafka aggregates → Elasticsearch), `pulse archive` and `pulse replay`."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import click
from rich.console import Console

from pulse.cli.aggregate_cmd import state_options
from pulse.cli.durations import Duration
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.observe.server import every, metrics_addr_option, serve


def _writer_readiness(settings: Settings) -> str | None:
    """A writer is ready when both the broker and the node answer (with its credentials)."""
    from pulse.connect.elasticsearch import problem
    from pulse.kafkaio import broker_problem

    return problem(settings.es) or broker_problem(settings.bootstrap, timeout=2.0)


def _serve_metrics(settings: Settings, metrics_addr: str | None) -> None:
    serve(metrics_addr, every(2.0, lambda: _writer_readiness(settings)))


T = TypeVar("T")

es_patience_option = click.option(
    "--es-patience", envvar="PULSE_ES_PATIENCE", type=Duration(0), default="60s", show_default=True,
    help="How long a writer that starts while Elasticsearch is away or busy (restarting with it, say) waits for it "
         "to answer and for Pulse's indices to be ready.")


def start_writer(settings: Settings, patience_s: float, setup: Callable[[float], T]) -> T:
    """Wait for Elasticsearch, then run a writer's ``setup`` (indices, checks; given the patience left), waiting
    out momentary refusals (a shard still recovering after a restart answers 503), all within ``patience_s``,
    saying so once."""
    from elasticsearch import ApiError, TransportError

    from pulse.store.bulk import transient

    deadline, said = time.monotonic() + patience_s, False
    require_es(settings, patience_s)
    while True:
        try:
            return setup(max(1.0, deadline - time.monotonic()))
        except (ApiError, TransportError) as exc:
            if not transient(exc) or time.monotonic() >= deadline:
                raise
            if not said:
                click.echo(f"Elasticsearch refused for now ({str(exc)[:160]}); retrying for up to "
                           f"{patience_s:.0f} s", err=True)
                said = True
            time.sleep(1.0)


def require_es(settings: Settings, patience_s: float = 0.0) -> None:
    """Elasticsearch answers, or a one-line error; with ``patience_s``, wait that long first, saying so once. A red
    cluster answers: the index that makes it red may be someone else's, and Pulse's own are waited for by name
    (`pulse.store.indices.await_ready`)."""
    deadline = time.monotonic() + patience_s
    said = False
    while settings.es.status() is None:
        if time.monotonic() >= deadline:
            raise PulseError(f"Elasticsearch is not reachable at {settings.es.display} (is the stack up? "
                             "`pulse stack up`)")
        if not said:
            click.echo(f"Elasticsearch is not reachable at {settings.es.display}; waiting up to "
                       f"{patience_s:.0f} s for it", err=True)
            said = True
        time.sleep(1.0)


def parse_instant(value: str) -> int:
    """Epoch milliseconds from epoch ms, an ISO 8601 time (UTC if no zone) or a duration ago ("2h", "30m")."""
    from pulse.durations import parse_ms

    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        return int(time.time() * 1000) - parse_ms(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not epoch ms, an ISO 8601 time or a duration ago like 2h") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def instant(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else parse_instant(value)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@click.command()
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True,
              help="The aggregator's input topic (for the lag heartbeat and the re-created topic guard).")
@click.option("--group", envvar="PULSE_GROUP", default="pulse-aggregator", show_default=True,
              help="The aggregator group whose `<group>.aggregates` documents are written.")
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True,
              help="Indices are <prefix>-windows, -users, -items, -partitions (aliases).")
@click.option("--flush-interval", envvar="PULSE_STORE_FLUSH_INTERVAL", type=Duration(0.05, 60),
              default="250ms", show_default=True, help="Time between bulk writes (more when behind: coalesced).")
@click.option("--exit-when-idle", type=Duration(0.1), default=None,
              help="Stop once no documents arrived for this long (batch jobs, tests).")
@es_patience_option
@metrics_addr_option
@click.pass_obj
def store(settings: Settings, topic: str, group: str, index_prefix: str, flush_interval: float,
          exit_when_idle: float | None, es_patience: float, metrics_addr: str | None) -> None:
    """Write the aggregator's documents to Elasticsearch with external versions (idempotent, exactly-once effect).

    Also refreshes the pipeline heartbeat (`<prefix>-heartbeat`: freshness and lag) about once a second.
    """

    from pulse.store.indices import current_generation, ensure_indices
    from pulse.store.lineage import check_source
    from pulse.store.writer import ElasticsearchWriter, WriterConfig
    from pulse.topics import require_broker

    require_broker(settings.bootstrap)
    _serve_metrics(settings, metrics_addr)
    es = settings.es.client()

    def setup(patience_s: float) -> None:
        ensure_indices(es, index_prefix, ready_patience_s=patience_s)
        check_source(es, settings.bootstrap, topic, group, current_generation(es, index_prefix), index_prefix)

    start_writer(settings, es_patience, setup)
    cfg = WriterConfig(bootstrap=settings.bootstrap, es=settings.es, group=group, input_topic=topic,
                       flush_interval_s=flush_interval, index_prefix=index_prefix)
    stop = _stop_on_signals()
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
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True)
@click.option("--retention-days", envvar="PULSE_ARCHIVE_RETENTION_DAYS", type=click.FloatRange(0.01), default=7.0,
              show_default=True, help="Daily indices older than this are deleted by Pulse (no ILM needed).")
@click.option("--events/--no-events", default=True, show_default=True,
              help="Archive valid input events (dead letters and late events are always archived).")
@click.option("--exit-when-idle", type=Duration(0.1), default=None,
              help="Stop once nothing arrived for this long (batch jobs, tests).")
@es_patience_option
@metrics_addr_option
@click.pass_obj
def archive(settings: Settings, topic: str, index_prefix: str, retention_days: float, events: bool,
            exit_when_idle: float | None, es_patience: float, metrics_addr: str | None) -> None:
    """Keep raw events, dead letters and late events in daily indices for drill-down (`<prefix>-events` etc.)."""

    from pulse.store.archive import ArchiveConfig, ArchiveWriter
    from pulse.store.indices import ensure_indices
    from pulse.topics import partition_count

    partition_count(settings.bootstrap, topic)  # clear error if the broker or the topic is missing
    _serve_metrics(settings, metrics_addr)
    es = settings.es.client()
    start_writer(settings, es_patience, lambda left: ensure_indices(es, index_prefix, ready_patience_s=left))
    cfg = ArchiveConfig(bootstrap=settings.bootstrap, es=settings.es, topic=topic, index_prefix=index_prefix,
                        retention_days=retention_days, events=events)
    stats = ArchiveWriter(cfg).run(_stop_on_signals(), exit_when_idle)
    parts = ", ".join(f"{n:,} {family}" for family, n in sorted(stats.by_family.items())) or "nothing"
    click.echo(f"archive: stopped; {parts} archived ({stats.stale:,} already there, {stats.expired:,} past "
               f"retention, {stats.dead_lettered} dead-lettered)", err=True)


@click.command()
@click.option("--from", "from_ms", required=True, callback=instant,
              help="Rebuild from this record time: epoch ms, ISO 8601 time, or a duration ago (2h). 0 = everything.")
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True, help="Input topic.")
@click.option("--group", envvar="PULSE_GROUP", default="pulse-aggregator", show_default=True,
              help="The aggregator group to rebuild (it is reset).")
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True)
@state_options
@click.option("--keep-old", is_flag=True, help="Keep the previous generation's indices after the swap.")
@click.pass_obj
def replay(settings: Settings, from_ms: int, topic: str, group: str, index_prefix: str, windows: tuple[int, ...],
           grace: int, correct_within: int, forward_wait: int, keep_old: bool) -> None:
    """Rebuild the aggregates from the input topic into new indices, then swap the aliases atomically.

    Readers see the old numbers until the swap. Stop the pipeline first; afterwards start it again as usual.
    Use it after a mapping change, or when `pulse setup` reports that the input topic was re-created.
    """
    from pulse.aggregate.partition import StateConfig
    from pulse.store.replay import ReplayPlan
    from pulse.store.replay import replay as run_replay
    from pulse.topics import require_broker

    require_broker(settings.bootstrap)
    require_es(settings)
    state = StateConfig(window_sizes=windows, grace_ms=grace, correct_within_ms=correct_within,
                        forward_wait_ms=forward_wait)
    plan = ReplayPlan(bootstrap=settings.bootstrap, es=settings.es, topic=topic, from_ms=from_ms,
                      group=group, index_prefix=index_prefix, state=state, keep_old=keep_old)
    console = Console(stderr=True)
    with console.status("replaying") as status:
        result = run_replay(
            plan, _stop_on_signals(), phase=lambda msg: status.update(msg),
            on_engine=lambda s: status.update(f"aggregating: {s.consumed:,} records, {s.docs:,} documents"),
            on_writer=lambda s: status.update(f"writing: {s.writes:,} documents written"))
    click.echo(f"replay: {result.engine.consumed:,} records aggregated into {result.writer.writes:,} documents; "
               f"aliases now point at generation {result.new_generation:06d}"
               + (f"; deleted {len(result.deleted)} old indices" if result.deleted else ""))
