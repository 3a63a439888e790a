"""`pulse setup`, `pulse generate` and `pulse events`: topics, realistic traffic, and the event schema."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pulse.aggregate.config import StateConfig
from pulse.aggregate.windows import label
from pulse.cli.durations import Duration
from pulse.cli.output import table_console
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.events.schema import json_schema
from pulse.generate.chaos import Chaos, ChaosConfig
from pulse.generate.ledger import open_ledger
from pulse.generate.producer import EventProducer, GenerateReport, RunLimits
from pulse.generate.summary import append_summary
from pulse.generate.traffic import SHAPES, Traffic, TrafficConfig
from pulse.generate.via import HttpSender
from pulse.kafkaio import broker_problem
from pulse.observe import metrics
from pulse.observe.server import every, metrics_addr_option, serve
from pulse.topics import INPUT_RETENTION_HOURS, ensure_topics, input_topics, partition_count, retention_needed_ms


def _fraction(_ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value <= 0.9:
        raise click.BadParameter(f"{param.name} must be between 0 and 0.9")
    return value


@click.command()
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True, help="Input topic.")
@click.option("--partitions", envvar="PULSE_PARTITIONS", default=6, show_default=True, type=click.IntRange(1, 1000))
@click.option("--retention-hours", envvar="PULSE_RETENTION_HOURS", default=float(INPUT_RETENTION_HOURS),
              show_default=True, type=click.FloatRange(0.01),
              help="How long Kafka keeps input, dead letters and late events: a third longer than --correct-within "
                   "at least, so that restore and `pulse verify` read the first copy of every event that counts.")
@click.option("--correct-within", type=Duration(0, ms=True), default=label(StateConfig.correct_within_ms),
              show_default=True, envvar="PULSE_CORRECT_WITHIN", help="The aggregator's correction horizon.")
@click.pass_obj
def setup(settings: Settings, topic: str, partitions: int, retention_hours: float, correct_within: int) -> None:
    """Create Pulse's topics and Elasticsearch index templates (idempotent); report topics whose settings differ."""
    needed = retention_needed_ms(correct_within)
    if retention_hours * 3_600_000 < needed:
        raise PulseError(f"--retention-hours {retention_hours:g} keeps input for less than {label(needed)}, a third "
                         f"more than --correct-within {label(correct_within)}: restore and verify could miss the first "
                         "copy of an event that still counts (raise the retention or shorten the horizon)")
    for name, state in ensure_topics(settings.bootstrap, input_topics(topic, partitions, retention_hours)):
        click.echo(f"{name:<28} {state}")

    from pulse.cli.store_cmd import require_es
    from pulse.store.indices import FAMILIES, alias, current_generation, ensure_indices
    from pulse.store.lineage import check_source

    require_es(settings)
    es = settings.es.client()
    made = set(ensure_indices(es))
    for family in FAMILIES:
        state = "created" if any(m.startswith(alias(family)) for m in made) else "exists"
        click.echo(f"{alias(family):<28} {state} (index template + alias)")
    click.echo(f"{'pulse-events|deadletter|late':<28} templates (daily archive indices)")
    lineage = check_source(es, settings.bootstrap, topic, "pulse-aggregator", current_generation(es))
    click.echo(f"{'source topic id':<28} {lineage}")


@click.command()
@click.option("--rate", type=click.FloatRange(0), default=200.0, show_default=True, envvar="PULSE_GEN_RATE",
              help="Events per second, paced in real time; 0 = as fast as possible.")
@click.option("--event-rate", type=click.FloatRange(0.001), default=1000.0, show_default=True,
              help="With --rate 0: events per second of event time (how fast the synthetic clock runs).")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after this many records.")
@click.option("--duration", type=Duration(0.1), default=None, help="Stop after this long.")
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed + --start = same events.")
@click.option("--start", "start_ms", type=int, default=None, help="Event time of the first event, epoch ms [now].")
@click.option("--users", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--items", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--shape", type=click.Choice(SHAPES), default="steady", show_default=True, help="Rate over time.")
@click.option("--shape-period", type=Duration(1), default="10m", show_default=True,
              help="Length of one diurnal cycle or burst cycle.")
@click.option("--click-rate", type=click.FloatRange(0, 1), default=0.35, show_default=True, help="P(click|view).")
@click.option("--cart-rate", type=click.FloatRange(0, 1), default=0.30, show_default=True,
              help="P(add_to_cart|click).")
@click.option("--purchase-rate", type=click.FloatRange(0, 1), default=0.50, show_default=True,
              help="P(purchase|add_to_cart).")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Share of steps that fail (error/timeout).")
@click.option("--late-fraction", type=float, default=0.0, callback=_fraction, show_default=True,
              help="Share of records whose event time is older than the grace period, by up to --late-max more "
                   "(the aggregator counts them as corrections).")
@click.option("--late-max", type=Duration(5.001, ms=True), default="90s", show_default=True,
              help="How far beyond the grace period a late record may be.")
@click.option("--too-late-fraction", type=float, default=0.0, callback=_fraction, show_default=True,
              help="Share of records older than the grace period plus --correct-within (the aggregator sends them "
                   "to <topic>.late).")
@click.option("--correct-within", type=Duration(0, ms=True), default=label(StateConfig.correct_within_ms),
              show_default=True, envvar="PULSE_CORRECT_WITHIN",
              help="The correction horizon the aggregator allows (too-late records are pushed beyond it).")
@click.option("--disorder-fraction", type=float, default=0.0, callback=_fraction, show_default=True,
              help="Share of records out of order but within grace.")
@click.option("--duplicate-fraction", type=float, default=0.0, callback=_fraction, show_default=True,
              help="Share of records that resend a recent event_id.")
@click.option("--invalid-fraction", type=float, default=0.0, callback=_fraction, show_default=True,
              help="Share of invalid records (undecodable, malformed JSON, wrong types, missing fields, negative "
                   "prices, far-future timestamps, oversized), in equal parts.")
@click.option("--null-key-fraction", type=float, default=0.0, callback=_fraction, show_default=True,
              envvar="PULSE_GEN_NULL_KEY_FRACTION",
              help="Share of records sent without a key, to a random partition, as REST proxies, connectors and "
                   "plain clients do (the aggregator forwards them to the partition that owns their user).")
@click.option("--crc32-key-fraction", type=float, default=0.0, callback=_fraction, show_default=True,
              envvar="PULSE_GEN_CRC32_KEY_FRACTION",
              help="Share of records keyed by user id but partitioned as librdkafka clients (Python, Go, Node, C) "
                   "do by default: CRC-32 of the key, not Java's murmur2 (the aggregator forwards those whose user "
                   "another partition owns).")
@click.option("--grace", type=Duration(0, ms=True), default="30s", show_default=True, envvar="PULSE_GRACE",
              help="The grace the aggregator allows (late events are pushed beyond it).")
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record every produced record (gzip msgpack) for `pulse verify` and tests.")
@click.option("--summary-json", envvar="PULSE_GEN_SUMMARY_JSON", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Append the run's summary (produced, delivered, failed, by kind) to FILE as one JSON "
                                 "line, for programs [env PULSE_GEN_SUMMARY_JSON].")
@click.option("--via", envvar="PULSE_GENERATE_VIA", default=None, metavar="URL",
              help="Send through a `pulse collect` front door at URL (e.g. http://127.0.0.1:8060) in batches of "
                   "100, as an app would, instead of to Kafka; each event is resent under its own id until "
                   "answered for good [env PULSE_GENERATE_VIA].")
@click.option("--via-key", envvar="PULSE_GENERATE_VIA_KEY", default=None, metavar="KEY",
              help="The write key for --via [env PULSE_GENERATE_VIA_KEY].")
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True)
@click.option("--partitions", envvar="PULSE_PARTITIONS", default=None, type=int,
              help="Partition count of the topic [read from Kafka].")
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal].")
@metrics_addr_option
@click.pass_obj
def generate(settings: Settings, **o: object) -> None:
    """Publish realistic user interactions (sessions walking a view→click→cart→purchase funnel) to Kafka.

    Keys are user ids, partitioned with murmur2 exactly like Java clients (except --null-key-fraction and
    --crc32-key-fraction of them).
    Ctrl-C flushes and prints a summary.
    """
    if o["count"] is None and o["duration"] is None and o["rate"] == 0:
        raise click.UsageError("--rate 0 needs --count or --duration")
    if float(o["null_key_fraction"]) + float(o["crc32_key_fraction"]) > 1:  # type: ignore[arg-type]
        raise click.UsageError("--null-key-fraction and --crc32-key-fraction add up to more than 1")
    if o["via"] and (o["ledger"] or float(o["null_key_fraction"]) or float(o["crc32_key_fraction"])):  # type: ignore[arg-type]
        raise click.UsageError("--via sends through the collector, which keys and partitions every event itself: "
                               "--ledger, --null-key-fraction and --crc32-key-fraction are for Kafka producers")
    rate = float(o["rate"])  # type: ignore[arg-type]
    try:
        traffic_cfg = TrafficConfig(
            seed=o["seed"], users=o["users"], items=o["items"],  # type: ignore[arg-type]
            rate=rate or float(o["event_rate"]), shape=o["shape"], shape_period_s=o["shape_period"],  # type: ignore[arg-type]
            click_rate=o["click_rate"], cart_rate=o["cart_rate"], purchase_rate=o["purchase_rate"],  # type: ignore[arg-type]
            error_rate=o["error_rate"],  # type: ignore[arg-type]
        )
        chaos_cfg = ChaosConfig(late_fraction=o["late_fraction"], disorder_fraction=o["disorder_fraction"],  # type: ignore[arg-type]
                                duplicate_fraction=o["duplicate_fraction"], invalid_fraction=o["invalid_fraction"],  # type: ignore[arg-type]
                                grace_ms=int(o["grace"]), too_late_fraction=o["too_late_fraction"],  # type: ignore[arg-type]
                                late_max_ms=int(o["late_max"]), horizon_ms=int(o["correct_within"]))  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    topic = str(o["topic"])
    if o["via"]:
        _via(str(o["via"]), o["via_key"], traffic_cfg, chaos_cfg, rate, o)  # type: ignore[arg-type]
        return
    partitions = o["partitions"] or partition_count(settings.bootstrap, topic)
    # "now" is taken after the broker answered, so event time matches the moment records go out
    start_ms = o["start_ms"] if o["start_ms"] is not None else _default_start(
        int(time.time() * 1000), rate, float(o["event_rate"]), o["count"], o["duration"])  # type: ignore[arg-type]
    traffic = Traffic(replace(traffic_cfg, start_ms=start_ms))  # type: ignore[arg-type]
    where = {"ledger", "progress", "metrics_addr", "summary_json"}  # where output goes: not the traffic's parameters
    params = {k: v for k, v in o.items() if k not in where} | {"start_ms": start_ms}
    ledger = open_ledger(o["ledger"], topic, int(partitions), params)  # type: ignore[arg-type]
    producer = EventProducer(settings.bootstrap, topic, int(partitions), ledger,
                             null_keys=float(o["null_key_fraction"]), seed=int(o["seed"]),  # type: ignore[arg-type]
                             crc32_keys=float(o["crc32_key_fraction"]))  # type: ignore[arg-type]
    if o["metrics_addr"]:
        metrics.generator(lambda: producer.report.delivered, lambda: producer.report.failed)
        serve(str(o["metrics_addr"]), every(2.0, lambda: broker_problem(settings.bootstrap, timeout=2.0)))
    limits = RunLimits(count=o["count"], duration_s=o["duration"], pace=rate > 0)  # type: ignore[arg-type]
    show_bar = sys.stderr.isatty() if o["progress"] is None else bool(o["progress"])
    report = _run_with_feedback(producer, Chaos(traffic, chaos_cfg), limits, traffic, show_bar)
    if ledger is not None:
        ledger.close({"delivered": report.delivered, "failed": report.failed})
    _print_summary(report, o["summary_json"])  # type: ignore[arg-type]
    if report.failed:
        raise PulseError(f"{report.failed} records were not delivered: {report.first_error}")
    if report.interrupted:
        sys.exit(130)


def _via(url: str, key: str | None, traffic_cfg: TrafficConfig, chaos_cfg: ChaosConfig, rate: float,
         o: dict[str, object]) -> None:
    start_ms = o["start_ms"] if o["start_ms"] is not None else _default_start(
        int(time.time() * 1000), rate, float(o["event_rate"]), o["count"], o["duration"])  # type: ignore[arg-type]
    traffic = Traffic(replace(traffic_cfg, start_ms=start_ms))  # type: ignore[arg-type]
    limits = RunLimits(count=o["count"], duration_s=o["duration"], pace=rate > 0)  # type: ignore[arg-type]
    show_bar = sys.stderr.isatty() if o["progress"] is None else bool(o["progress"])
    report = _run_with_feedback(HttpSender(url, key), Chaos(traffic, chaos_cfg), limits, traffic, show_bar)
    _print_summary(report, o["summary_json"])  # type: ignore[arg-type]
    if report.interrupted:
        sys.exit(130)


FLAT_OUT_GUESS = 100_000
"""Events per second assumed for `--rate 0 --duration` when placing its synthetic clock in the past."""


def _default_start(now_ms: int, rate: float, event_rate: float, count: int | None, duration: float | None) -> int:
    """Paced traffic starts now. Flat-out traffic (``--rate 0``) runs its synthetic clock faster than the wall
    clock, so it ends now instead: its events lie in the past, where the broker's clock (LogAppendTime) and
    Kafka's limits on future timestamps leave them alone."""
    if rate > 0:
        return now_ms
    events = count if count is not None else (duration or 0) * FLAT_OUT_GUESS
    return now_ms - int(events / event_rate * 1000)


def _run_with_feedback(producer: EventProducer | HttpSender, records: Chaos, limits: RunLimits, traffic: Traffic,
                       show_bar: bool) -> GenerateReport:
    clock = lambda: traffic.clock.elapsed_s  # noqa: E731
    if not show_bar:
        last = [time.monotonic()]

        def log_line(r: GenerateReport) -> None:
            if time.monotonic() - last[0] >= 5.0:
                last[0] = time.monotonic()
                click.echo(f"generate: {r.produced:,} produced, {r.delivered:,} delivered, "
                           f"{r.produced / max(r.seconds, 1e-9):,.0f}/s", err=True)

        return producer.run(records, limits, clock, log_line)
    total = limits.count or (int(limits.duration_s) if limits.duration_s else None)
    columns = [TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("generate", total=total, info="")

        def update(r: GenerateReport) -> None:
            done = r.produced if limits.count else int(r.seconds)
            bar.update(task, completed=done,
                       info=f"{r.produced / max(r.seconds, 1e-9):,.0f}/s · {r.delivered:,} acked")

        report = producer.run(records, limits, clock, update)
        update(report)
        return report


def _print_summary(r: GenerateReport, summary_json: Path | None) -> None:
    if summary_json is not None:
        append_summary(summary_json, r)
    table = Table(title="pulse generate", show_header=False)
    table.add_row("produced", f"{r.produced:,}")
    table.add_row("delivered (acked)", f"{r.delivered:,}")
    table.add_row("failed", f"{r.failed:,}")
    table.add_row("seconds", f"{r.seconds:.2f}")
    table.add_row("rate", f"{r.rate:,.0f} events/s")
    table.add_row("bytes", f"{r.bytes:,}")
    for tag, n in sorted(r.by_tag.items()):
        table.add_row(f"  {tag.name.lower()}", f"{n:,} ({n / max(r.produced, 1):.2%})")
    if r.interrupted:
        table.add_row("stopped", "interrupted (Ctrl-C); everything produced was flushed")
    table_console(stderr=True).print(table)


@click.group()
def events() -> None:
    """The interaction event schema (v1)."""


@events.command("schema")
def events_schema() -> None:
    """Print the JSON Schema for event v1 (the same file ships as src/pulse/events/event-v1.schema.json)."""
    click.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


COMMANDS = [setup, generate, events]
