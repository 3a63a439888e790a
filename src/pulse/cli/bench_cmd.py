"""`pulse bench …`: throughput measured side by side with a peer in the same run (ratios, not timings)."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from pulse.cli.durations import Duration, spell
from pulse.cli.output import emit, json_option, table_console
from pulse.config import Settings

if TYPE_CHECKING:
    from pulse.bench.e2e import RunResult, StepResult


@click.group()
def bench() -> None:
    """Benchmarks against peers on the real local stack. They print ratios; no absolute targets.

    Each run deletes the topics and indices it created when it ends.
    """


def on_stack(command: Callable[..., None]) -> Callable[..., None]:
    """Run a benchmark only with the broker up, and delete what it created when it ends (errors, Ctrl-C too).
    A decorator rather than the group's callback, so that `--help` works with the stack down."""

    @functools.wraps(command)
    def run(settings: Settings, *args: object, **kwargs: object) -> None:
        from pulse.bench.scratch import scratch
        from pulse.topics import require_broker

        require_broker(settings.bootstrap)
        with scratch(settings):
            command(settings, *args, **kwargs)

    return run


@bench.command()
@click.option("--count", type=click.IntRange(1000), default=500_000, show_default=True, help="Records per contender.")
@click.option("--partitions", type=click.IntRange(1), default=6, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Alternate the contenders this many times and keep each one's best.")
@json_option
@click.pass_obj
@on_stack
def produce(settings: Settings, count: int, partitions: int, rounds: int, as_json: bool) -> None:
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
    ratio = ours.rate / theirs.rate  # type: ignore[attr-defined]

    def people() -> None:
        table = Table(title=f"pulse bench produce: {count:,} records, acks=all, idempotent, lz4, {partitions} "
                            "partitions")
        table.add_column("contender")
        table.add_column("records/s", justify="right")
        table.add_column("record bytes", justify="right")
        for r in (ours, theirs):
            table.add_row(r.name, f"{r.rate:,.0f}", f"{r.record_bytes:.0f}")  # type: ignore[attr-defined]
        table_console().print(table)
        click.echo(f"ratio pulse/kafka = {ratio:.2f} ({'meets' if ratio >= 0.5 else 'MISSES'} the >= 0.5 target)")

    emit(as_json, {"bench": "produce", "count": count, "partitions": partitions, "rounds": rounds,
                   "contenders": [{"name": r.name, "records_per_s": r.rate, "record_bytes": r.record_bytes}  # type: ignore[attr-defined]
                                  for r in (ours, theirs)],
                   "ratio": ratio, "target": 0.5, "meets": ratio >= 0.5}, people)


@bench.command("collect")
@click.option("--count", type=click.IntRange(1000), default=200_000, show_default=True,
              help="Events per contender (the collector's in batches of 100).")
@click.option("--partitions", type=click.IntRange(1), default=6, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True,
              help="Rounds of each contender, taking turns; each one's median is compared.")
@json_option
@click.pass_obj
@on_stack
def collect_bench(settings: Settings, count: int, partitions: int, rounds: int, as_json: bool) -> None:
    """Events/s through `pulse collect` over HTTP (batches of 100, answered once Kafka has them) vs Pulse's own
    producer, and the collector's p99 time to answer at half its rate (targets: >= 0.5x, p99 < 50 ms)."""
    from pulse.bench import collect as bench
    from pulse.bench.produce import run_pulse

    console = Console(stderr=True)
    produced, posted = [], []
    collector = bench.Collector(settings, partitions)
    try:
        for r in range(rounds):
            with console.status(f"round {r + 1}/{rounds}: pulse generate → Kafka"):
                produced.append(run_pulse(settings, count, partitions).rate)
            batches = bench.bodies(count, seed=r)  # new event ids each round: none is a duplicate
            with console.status(f"round {r + 1}/{rounds}: pulse collect, {bench.CONCURRENCY} requests in flight"):
                posted.append(bench.throughput(collector.url, batches).rate)
        rate = statistics.median(posted)
        with console.status(f"pulse collect: p99 at {rate / 2:,.0f} events/s"):
            paced = bench.latency(collector.url, bench.bodies(min(count, max(10_000, round(rate * 20))), seed=rounds),
                                  rate / 2)
    finally:
        collector.stop()
    producer_rate = statistics.median(produced)
    ratio = rate / producer_rate

    def people() -> None:
        table = Table(title=f"pulse bench collect: {count:,} events, acks=all, idempotent, {partitions} partitions, "
                            f"median of {rounds} round(s)")
        for column in ("contender", "events/s", "p50 ms", "p99 ms", "what it does"):
            table.add_column(column, justify="left" if column in ("contender", "what it does") else "right")
        table.add_row("pulse generate (Kafka producer)", f"{producer_rate:,.0f}", "", "",
                      "generates and produces; delivery reports counted")
        table.add_row("pulse collect (HTTP, batches of 100)", f"{rate:,.0f}", "", "",
                      f"{bench.CONCURRENCY} requests in flight; validates, keys, produces, answers once acknowledged")
        table.add_row(f"pulse collect at {paced.rate:,.0f} events/s", "", f"{paced.p50_ms:,.1f}",
                      f"{paced.p99_ms:,.1f}", f"{paced.answered:,} events, batches sent open-loop")
        table_console().print(table)
        click.echo(f"collect / producer = {ratio:.2f}x ({'meets' if ratio >= 0.5 else 'MISSES'} >= 0.5x); p99 at half "
                   f"its rate = {paced.p99_ms:.1f} ms ({'meets' if paced.p99_ms < 50 else 'MISSES'} < 50 ms)")

    emit(as_json, {"bench": "collect", "count": count, "partitions": partitions, "rounds": rounds,
                   "producer_per_s": producer_rate, "producer_rounds": produced, "collector_per_s": rate,
                   "collector_rounds": posted, "ratio": ratio, "target": 0.5, "meets": ratio >= 0.5,
                   "latency": paced, "p99_target_ms": 50, "p99_meets": paced.p99_ms < 50}, people)


@bench.command("aggregate")
@click.option("--count", type=click.IntRange(1000), default=300_000, show_default=True,
              help="Events pre-produced once and read by every contender.")
@click.option("--contenders", "which", default="raw,pulse,unkeyed,crc32,flink,quix,naive", show_default=True,
              help="Comma-separated subset of raw, pulse, unkeyed and crc32 (Pulse on the same events without keys, "
                   "and keyed with librdkafka's default partitioner: the repartitioned path), flink, quix, naive.")
@click.option("--rounds", type=click.IntRange(1, 9), default=3, show_default=True,
              help="Run every contender this many times, in turn; the verdict is the median of the per-round ratios.")
@click.option("--timeout", type=Duration(10), default="15m", show_default=True,
              help="Give up on a contender after this long.")
@click.option("--warmup", type=click.IntRange(1, 30), default=15, show_default=True,
              help="At most this many untimed runs of raw and Pulse first; they stop once Pulse's time stops "
                   "improving by more than 10 % and the broker's JIT compiler is quiet (a freshly started broker "
                   "needs several).")
@json_option
@click.pass_obj
@on_stack
def aggregate_bench(settings: Settings, count: int, which: str, rounds: int, timeout: float, warmup: int,
                    as_json: bool) -> None:
    """Events/s of one aggregator process (exactly-once) vs Flink, Quix Streams, the naive design and a raw consumer.

    Every contender reads the same pre-produced topic with a fresh consumer group and is timed from process
    start until all its output for the input is committed: Pulse until it has published every document it would
    publish (item shards and user documents included) and exited; the others to their last commit. Untimed
    warm-up runs of the raw consumer and Pulse come first, until Pulse's time stops improving and the broker's
    JIT compiler is quiet, so that the broker's internal topics and compiled code are ready (a freshly started
    broker needs several). Targets: >= 3x Flink, >= 10x Quix Streams and >= 0.5x the raw ceiling.
    """
    import statistics
    import time as _time

    from pulse.bench import aggregate as agg

    console = Console(stderr=True)
    names = [n.strip() for n in which.split(",") if n.strip()]
    quix = agg.quix_python(settings, lambda m: console.print(m)) if "quix" in names else None
    flink_cp = None
    if "flink" in names:
        from pulse.bench import flink

        with console.status(f"resolving {flink.label()} from Maven Central (once) and compiling the job"):
            flink_cp = flink.classpath(settings)
    topic = f"pulse.bench.agg-{_time.strftime('%H%M%S')}"
    agg.compile_sources()
    start_ms = int(_time.time() * 1000) - 600_000
    with console.status(f"producing {count:,} events to {topic}"):
        ends = agg.prepare_input(settings, topic, count, 6, start_ms=start_ms)
    for key, (named, how, shares) in agg.FOREIGN.items():
        if key in names:
            with console.status(f"producing the same {count:,} events {how} to {named(topic)}"):
                agg.prepare_input(settings, named(topic), count, 6, start_ms=start_ms, **shares)
    log = settings.home / "logs" / "bench-aggregate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with console.status("warm-up (untimed): raw consumer and pulse aggregate") as status:
        warm, jit = agg.warm_up(settings, topic, ends, timeout, log, warmup,
                                lambda t, j: status.update(f"warm-up (untimed): pulse took {t:.2f} s"
                                                           + (f", broker JIT {j:.2f} s" if j is not None else "")))
    click.echo(f"warm-up (untimed): pulse {', '.join(f'{t:.2f}' for t in warm)} s"
               + (f"; broker JIT compiling {', '.join(f'{j:.2f}' for j in jit)} s" if jit else "")
               + (" (steady)" if agg.warmed(warm, jit) else f" (not steady after {warmup} runs)"), err=as_json)
    results: list[dict[str, agg.Result]] = []
    for i in range(rounds):
        results.append({})
        for contender in agg.contenders(settings, topic, names, quix, flink_cp):
            with console.status(f"round {i + 1}/{rounds}: {contender.name}"):
                results[-1][contender.key] = agg.measure(settings, contender, topic, ends, timeout, log)
    agg.cleanup(settings)
    targets = {"flink": 3.0, "quix": 10.0, "naive": None, "raw": 0.5}
    versus = {peer: agg.per_round_ratios(results, "pulse", peer) for peer in targets}
    foreign = {key: agg.per_round_ratios(results, key, "pulse") for key in agg.FOREIGN}

    def people() -> None:
        table = Table(title=f"pulse bench aggregate: {count:,} events, 6 partitions, one process each, {rounds} "
                            "round(s)")
        for col in ("contender", "events/s (median)", "per round", "events per CPU-second (median)",
                    "CPU µs per event (median)", "notes"):
            table.add_column(col, justify="left" if col in ("contender", "notes") else "right")
        for key in results[0]:
            runs = [r[key] for r in results]
            table.add_row(runs[0].name, f"{statistics.median(r.rate for r in runs):,.0f}",
                          " ".join(f"{r.rate / 1000:,.0f}k" for r in runs),
                          f"{statistics.median(r.per_cpu for r in runs):,.0f}",
                          f"{statistics.median(1e6 * r.cpu / r.events for r in runs):.1f}", runs[0].note)
        table_console().print(table)
        if {"pulse", "raw"} <= results[0].keys():
            per_cpu = statistics.median(r["pulse"].per_cpu / r["raw"].per_cpu for r in results)
            click.echo(f"per CPU-second (throughput per core, no target): pulse / raw = {per_cpu:.2f}x")
        for key, ratios in foreign.items():
            if ratios:
                click.echo(f"repartitioned path: pulse on {key} / keyed input = {statistics.median(ratios):.2f}x "
                           f"median of rounds [{', '.join(f'{x:.2f}' for x in ratios)}] ({results[0][key].note})")
        for peer, target in targets.items():
            if ratios := versus[peer]:
                ratio = statistics.median(ratios)
                verdict = "" if target is None else (" (meets" if ratio >= target else " (MISSES") + f" >= {target}x)"
                click.echo(f"pulse / {peer} = {ratio:.2f}x median of rounds [{', '.join(f'{x:.2f}' for x in ratios)}]"
                           f"{verdict}")

    emit(as_json, {"bench": "aggregate", "count": count, "rounds": rounds, "warmup_s": warm, "broker_jit_s": jit,
                   "contenders": {key: {"name": results[0][key].name, "note": results[0][key].note,
                                        "rates": [r[key].rate for r in results],
                                        "per_cpu_second": [r[key].per_cpu for r in results]} for key in results[0]},
                   "pulse_over": {peer: {"median": statistics.median(v), "rounds": v, "target": targets[peer],
                                         "meets": targets[peer] is None or statistics.median(v) >= targets[peer]}
                                  for peer, v in versus.items() if v},
                   "repartitioned_over_keyed": {k: {"median": statistics.median(v), "rounds": v}
                                                for k, v in foreign.items() if v}}, people)


@bench.command("store")
@click.option("--rate", type=click.FloatRange(100), default=50_000.0, show_default=True,
              help="Events/s the write cost is measured at (event time; the aggregator flushes once per second).")
@click.option("--count", type=click.IntRange(10_000), default=3_000_000, show_default=True,
              help="Events for the write-cost measurement (the default spans two 30 s user intervals at 50k/s).")
@click.option("--live-rates", default="500,2000", show_default=True,
              help="Comma-separated real-time events/s for the freshness measurement (what this machine sustains).")
@click.option("--seconds", type=Duration(5), default="30s", show_default=True,
              help="Length of the freshness measurement (after an 8 s warm-up).")
@json_option
@click.pass_obj
@on_stack
def store_bench(settings: Settings, rate: float, count: int, live_rates: str, seconds: float, as_json: bool) -> None:
    """Elasticsearch write operations per 1000 events (target <= 20; the naive design writes 1000) and
    freshness from event to search, p50/p99, against flush interval + refresh interval + 1 s."""
    from pulse.bench import store as sb

    console = Console(stderr=True)
    with console.status(f"write cost: {count:,} events at {rate:,.0f}/s of event time, one flush per second"):
        cost = sb.write_cost(settings, count, rate)
    log = settings.home / "logs" / "bench-store.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fresh_runs = []
    for live_rate in (float(r) for r in live_rates.split(",") if r.strip()):
        with console.status(f"freshness: live pipeline at {live_rate:,.0f} events/s for {seconds:.0f}s"):
            fresh_runs.append(sb.freshness(settings, live_rate, seconds, log))
    budget = 1.0 + sb.REFRESH_S + 1.0  # aggregator flush interval + refresh interval + 1 s

    def people() -> None:
        table = Table(title="pulse bench store")
        for col in ("measure", "value", "target", "verdict"):
            table.add_column(col, justify="left" if col == "measure" else "right")
        table.add_row(f"ES writes / 1000 events @ {rate:,.0f}/s", f"{cost.per_1000:.1f}", "<= 20 (naive 1000)",
                      "meets" if cost.per_1000 <= 20 else "MISSES")
        for fresh in fresh_runs:
            for q in (0.5, 0.99):
                value = fresh.quantile(q)
                table.add_row(f"freshness p{round(q * 100)} @ {fresh.rate:,.0f}/s", f"{value:.2f}s",
                              f"<= {budget:.1f}s", "meets" if value <= budget else "MISSES")
        table_console().print(table)
        click.echo(f"write cost: {cost.documents:,} documents for {cost.events:,} events in {cost.flushes} flushes "
                   f"(item shards every 5th, users within the default budget per 1000 events): "
                   + ", ".join(f"{kind} {n:,}" for kind, n in cost.by_kind.items()) + "; freshness samples: "
                   + ", ".join(str(len(f.samples)) for f in fresh_runs))

    emit(as_json, {"bench": "store", "rate": rate, "write_cost": cost, "per_1000": cost.per_1000, "target": 20,
                   "meets": cost.per_1000 <= 20,
                   "freshness": [{"rate": f.rate, "p50_s": f.quantile(0.5), "p99_s": f.quantile(0.99),
                                  "samples": len(f.samples), "budget_s": budget,
                                  "meets": f.quantile(0.99) <= budget} for f in fresh_runs]}, people)


@bench.command("memory")
@click.option("--count", type=click.IntRange(10_000), default=3_000_000, show_default=True,
              help="Events to aggregate (short sessions, so most carry a new user).")
@click.option("--users", type=click.IntRange(1000), default=2_000_000, show_default=True,
              help="User population the generator draws from (uniformly).")
@click.option("--late-fraction", type=click.FloatRange(0, 0.5), default=0.05, show_default=True,
              help="A second run's fraction of events sent late, spread up to --late-max behind (corrections); "
                   "0: only the run without late events.")
@click.option("--late-max", type=Duration(5.001, ms=True), default="2d", show_default=True,
              help="How far behind a late event may be (within the 3-day correction horizon: each one is counted).")
@json_option
@click.pass_obj
@on_stack
def memory_bench(settings: Settings, count: int, users: int, late_fraction: float, late_max: int,
                 as_json: bool) -> None:
    """Peak RSS of one aggregator holding about a million distinct users (limit: 2 GiB per 1M users), without late
    events and then with corrections spread over the horizon."""
    from pulse.bench import memory

    log = settings.home / "logs" / "bench-memory.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    runs = [("no late events", 0.0)] + ([(f"{late_fraction:.0%} late, up to {spell(late_max / 1000)}",
                                          late_fraction)] if late_fraction else [])
    table = Table(title=f"pulse bench memory: {count:,} events over {users:,} users, one aggregator")
    for col in ("input", "distinct users", "seconds", "peak RSS MiB", "limit MiB", "", "peak state MiB"):
        table.add_column(col, justify="right")
    missed, measured = False, []
    for name, late in runs:
        with Console(stderr=True).status(f"{name}: producing {count:,} events, then aggregating"):
            r = memory.run(settings, count, users, log, late, late_max)
        limit = 2 * 1024**3 * max(1.0, r.distinct_users / 1_000_000)  # 2 GiB for 1M users, pro rata beyond
        missed |= r.peak_rss_bytes > limit
        measured.append({"input": name, "late_fraction": late, "run": r, "limit_bytes": limit,
                         "meets": r.peak_rss_bytes <= limit})
        table.add_row(name, f"{r.distinct_users:,}", f"{r.seconds:,.0f}", f"{r.peak_rss_bytes / 1024**2:,.0f}",
                      f"{limit / 1024**2:,.0f}", "meets" if r.peak_rss_bytes <= limit else "MISSES",
                      f"{r.peak_state_bytes / 1024**2:,.0f}")

    def people() -> None:
        table_console().print(table)
        click.echo("peak state: the aggregator's own estimate (pulse_state_bytes); the resident peak also holds the "
                   "last flush's documents in flight")

    emit(as_json, {"bench": "memory", "count": count, "users": users, "runs": measured}, people)
    if missed:
        raise click.ClickException("peak RSS over the limit")


@bench.command("verify")
@click.option("--sizes", default="1M,4M,16M", show_default=True, callback=lambda _c, _p, v: _counts(v),
              help="Input sizes to verify, in records (k and M suffixes), one step each.")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="`pulse verify --workers`.")
@click.option("--crc32-keys", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of the input partitioned as librdkafka clients do by default (CRC-32 of the key): "
                   "those records are forwarded to the partition owning their user, and verify walks the "
                   "repartition topic too. The rest is keyed by user id with Kafka's Java partitioner.")
@json_option
@click.pass_obj
@on_stack
def verify_bench(settings: Settings, sizes: list[int], workers: int, crc32_keys: float, as_json: bool) -> None:
    """Records/s and peak RSS of `pulse verify` over growing inputs (targets: 100k records/s; memory that does
    not grow with the input)."""
    from pulse.bench import verify

    log = settings.home / "logs" / "bench-verify.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with Console(stderr=True).status("verify") as status:
        steps = verify.run(settings, sizes, log, workers, lambda msg: status.update(msg), crc32_keys)
    first, last = steps[0], steps[-1]
    growth = (last.peak_rss_bytes - first.peak_rss_bytes) / 1024**2 / max((last.records - first.records) / 1e6, 1e-9)
    slowest = min(s.rate for s in steps)

    def people() -> None:
        table = Table(title=f"pulse bench verify: {workers} workers, 6 partitions, 1 % each of invalid, duplicate, "
                            f"late and out-of-order events, {crc32_keys:.0%} CRC-32 keyed")
        for col in ("records", "documents", "seconds", "records/s", "peak RSS MiB", "MiB per 1M records", "exact"):
            table.add_column(col, justify="right")
        for s in steps:
            mib = s.peak_rss_bytes / 1024**2
            table.add_row(f"{s.records:,}", f"{s.documents:,}", f"{s.seconds:,.1f}", f"{s.rate:,.0f}", f"{mib:,.0f}",
                          f"{mib / (s.records / 1e6):,.0f}", "yes" if s.ok else "NO")
        table_console().print(table)
        click.echo(f"slowest step {slowest:,.0f} records/s ({'meets' if slowest >= 100_000 else 'MISSES'} the 100k "
                   f"target); peak RSS grew {growth:,.1f} MiB per additional 1M records "
                   f"({first.peak_rss_bytes / 1024**2:,.0f} MiB at {first.records:,}, "
                   f"{last.peak_rss_bytes / 1024**2:,.0f} MiB at {last.records:,})")

    emit(as_json, {"bench": "verify", "workers": workers, "crc32_keys": crc32_keys,
                   "steps": [{"step": s, "records_per_s": s.rate} for s in steps], "slowest_per_s": slowest,
                   "target_per_s": 100_000, "meets": slowest >= 100_000,
                   "rss_growth_mib_per_1m_records": growth}, people)
    if not all(s.ok for s in steps):
        raise click.ClickException(f"`pulse verify` found differences; see {log}")


@bench.command("ids")
@click.option("--count", default="10M", show_default=True, callback=lambda _c, _p, v: _counts(v)[-1],
              help="Event ids held, as one partition would over its duplicate horizon (k and M suffixes).")
@json_option
@click.pass_obj
def ids_bench(settings: Settings, count: int, as_json: bool) -> None:
    """Memory, lookups and restore time of holding a partition's event ids exactly: the id store built for
    horizons of days against the in-memory map the engine keeps for 30 s (no stack needed)."""
    from pulse.bench import ids

    workdir = settings.home / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    with Console(stderr=True).status(f"holding {count:,} ids, each way in a process of its own"):
        held = ids.run(count, workdir)
    by = {h.kind: h for h in held}
    store, plain, restored = by["store"], by["map"], by["restore"]

    def people() -> None:
        table = Table(title=f"pulse bench ids: {count:,} UUIDv7 event ids of one partition, held exactly")
        for col in ("kind", "peak RSS MiB", "bytes per id", "inserts/s", "lookups/s", "wrong answers", "restore s",
                    "runs", "disk MiB"):
            table.add_column(col, justify="right")
        for h in held:
            on_disk = h.kind != "map"
            table.add_row(h.kind, f"{h.peak_rss_bytes / 1024**2:,.0f}", f"{h.bytes_per_id:,.1f}",
                          f"{h.count / h.insert_s:,.0f}" if h.insert_s else "-",
                          f"{h.lookups / max(h.lookup_s, 1e-9):,.0f}", f"{h.wrong:,}",
                          f"{h.restore_s:,.1f}" if h.restore_s else "-", f"{h.runs}" if on_disk else "-",
                          f"{h.disk_bytes / 1024**2:,.0f}" if on_disk else "-")
        table_console().print(table)
        click.echo(f"the store held {count:,} ids in {store.peak_rss_bytes / 1024**2:,.0f} MiB above the baseline, "
                   f"{plain.peak_rss_bytes / max(store.peak_rss_bytes, 1):,.1f}x less than the map "
                   f"({plain.peak_rss_bytes / 1024**2:,.0f} MiB); a restore built it in {restored.restore_s:,.1f}s "
                   f"at a peak of {restored.peak_rss_bytes / 1024**2:,.0f} MiB")

    emit(as_json, {"bench": "ids", "count": count, "held": held}, people)
    if any(h.wrong for h in held):
        raise click.ClickException("an id was answered wrongly: the store is not exact")


def _counts(text: str) -> list[int]:
    """``1M,4M,16M`` → [1000000, 4000000, 16000000]."""
    scale = {"k": 1_000, "m": 1_000_000}
    try:
        out = [int(float(r[:-1]) * scale[r[-1].lower()]) if r[-1].lower() in scale else int(r)
               for r in (part.strip() for part in text.split(",")) if r]
    except (ValueError, IndexError):
        raise click.BadParameter(f"{text!r}: write sizes as a comma-separated list, e.g. 1M,4M,16M") from None
    if not out or min(out) < 1000:
        raise click.BadParameter("give sizes of at least 1000 records")
    return sorted(out)


def _rates(text: str) -> list[float]:
    """``10k,20k,50000`` → [10000.0, 20000.0, 50000.0], ascending."""
    try:
        rates = [float(r[:-1]) * 1000 if r.lower().endswith("k") else float(r)
                 for r in (part.strip() for part in text.split(",")) if r]
    except ValueError:
        raise click.BadParameter(f"{text!r}: write rates as a comma-separated list, e.g. 10k,20k,50k") from None
    if not rates or min(rates) <= 0:
        raise click.BadParameter("give at least one positive rate")
    return sorted(rates)


@bench.command("e2e")
@click.option("--rates", default="3k,10k,20k,35k,50k,65k,80k,100k", show_default=True,
              help="Offered events/s to step through, ascending; the run stops at the first step that does not hold. "
                   "The 3k step is the low-rate one, where fixed costs per flush weigh most.")
@click.option("--hold", type=Duration(5), default="60s", show_default=True,
              help="Measured span of each step (after --settle).")
@click.option("--settle", type=Duration(1), default="10s", show_default=True,
              help="Unmeasured start of each step, for the pipeline to reach the new rate.")
@click.option("--freshness-limit", type=Duration(0.5), default="2s", show_default=True,
              help="Without the archive, a step holds only if probe events' freshness p99 is within this.")
@click.option("--archive-freshness-limit", type=Duration(0.5), default="3s", show_default=True,
              help="The same limit with the archive on.")
@click.option("--archive", "archive_modes", type=click.Choice(["both", "off", "on"]), default="both",
              show_default=True, help="Run the pipeline without the raw-event archive, with it, or both in turn.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to draw freshness p50 and p99 against the offered rate (PNG)  [default: "
                   "<PULSE_HOME>/bench-e2e.png]")
@json_option
@click.pass_obj
@on_stack
def e2e_bench(settings: Settings, rates: str, hold: float, settle: float, freshness_limit: float,
              archive_freshness_limit: float, archive_modes: str, plot: Path | None, as_json: bool) -> None:
    """The highest event rate the whole pipeline sustains, and what its output costs Elasticsearch.

    Runs `pulse generate` at each offered rate → Kafka → `pulse aggregate` → `pulse store` (+ `pulse archive`)
    → Elasticsearch, every stage its own process on this machine with the broker and the node. A step holds when
    the input got >= 95 % of the offered rate, probe events (sent by plain Kafka clients with librdkafka's and
    the Java client's default partitioners, in turn) were all visible in a search of the aggregates with
    freshness p99 within the limit (one flush interval more for those the aggregator forwards to their user's
    partition), and no consumer fell behind. Also prints, from the node's own statistics, what indexing cost per
    1000 events (operations, Lucene documents, milliseconds) for the aggregates, each of their families and the
    archive (one document per event: the naive design), and the cores each process used.

    Targets: >= 50k events/s at freshness p99 <= 2 s without the archive, >= 20k at <= 3 s with it; <= 5 aggregate
    index operations per 1000 events at 50k/s; at 3k/s <= 30 operations per 1000 events, freshness p50 <= 1 s and
    the aggregates' indexing time <= 0.1x the archive's.
    """
    from pulse.bench import e2e

    steps = _rates(rates)
    log = settings.home / "logs" / "bench-e2e.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    runs = []
    for archive in {"both": (False, True), "off": (False,), "on": (True,)}[archive_modes]:
        label = "with the archive" if archive else "without the archive"
        with console.status(label) as status:
            limit = archive_freshness_limit if archive else freshness_limit
            runs.append(e2e.run(settings, steps, archive, hold, settle, limit, log,
                                lambda m, label=label: status.update(f"{label}: {m}")))
    from pulse.bench.plot import freshness_plot

    drawn = freshness_plot(runs, plot or settings.home / "bench-e2e.png")

    def people() -> None:
        for run in runs:
            table_console().print(e2e_table(run, hold))
            click.echo("\n".join(e2e_details(run)))
        for run in runs:
            click.echo(e2e_verdict(run))
        click.echo(f"freshness plot: {drawn}")

    emit(as_json, {"bench": "e2e", "hold_s": hold, "runs": runs, "verdicts": [e2e_verdict(run) for run in runs],
                   "plot": str(drawn)}, people)


def e2e_table(run: RunResult, hold: float) -> Table:
    from pulse.bench.indexing import AGGREGATES, ARCHIVE

    table = Table(title=f"pulse bench e2e, {'with' if run.archive else 'without'} the archive: {hold:.0f}s per step")
    table.caption = ("per 1000 events: index operations / Lucene documents / ms of indexing time; "
                     "time ratio = aggregates' indexing time ÷ the archive's")
    for col in ("offered/s", "input/s", "fresh p50/p99", "direct p99", "fwd p99", "aggregates", "archive",
                "time ratio", "holds"):
        table.add_column(col, justify="left" if col == "holds" else "right")
    for s in run.steps:
        ratio = "-" if s.time_ratio is None else f"{s.time_ratio:.2f}x"
        table.add_row(f"{s.offered:,.0f}", f"{s.delivered:,.0f}", f"{s.p(0.5):.2f}/{s.p(0.99):.2f}s",
                      f"{s.p(0.99, False):.2f}s", f"{s.p(0.99, True):.2f}s", _cost(s, AGGREGATES),
                      _cost(s, ARCHIVE) if run.archive else "-", ratio, "yes" if not s.problems() else "no")
    return table


def _cost(step: StepResult, part: str) -> str:
    return f"{step.ops_per_1000(part):.1f}/{step.lucene_per_1000(part):.0f}/{step.ms_per_1000(part):.1f}"


def e2e_details(run: RunResult) -> list[str]:
    """Per step: the cores each process used, the probes counted, what each aggregate family cost Elasticsearch,
    and why it did not hold."""
    from pulse.bench.indexing import HEARTBEATS
    from pulse.store.indices import FAMILIES

    lines = []
    for s in run.steps:
        cores = ", ".join(f"{name} {used:.2f}" for name, used in sorted(s.cores.items(), key=lambda kv: -kv[1]))
        families = ", ".join(f"{family} {_cost(s, family)}" for family in FAMILIES if family in s.index)
        lines.append(f"  {s.offered:,.0f}/s: cores used: {cores} (total {sum(s.cores.values()):.2f}); "
                     f"{len(s.probes)} probes ({sum(p.forwarded for p in s.probes)} forwarded, {s.lost_probes} lost; "
                     f"freshness p50 direct {s.p(0.5, False):.2f}s, forwarded {s.p(0.5, True):.2f}s); "
                     f"aggregates by family (ops / Lucene docs / ms per 1000 events): {families}; heartbeats "
                     f"{s.ops_per_1000(HEARTBEATS):.2f} ops" + ("" if not s.problems() else
                                                                "; does not hold: " + "; ".join(s.problems())))
    return lines


LOW_RATE = 3_000
"""An ordinary rate, where a flush's fixed costs weigh most: the first step of the default rates."""


def _meets(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def e2e_verdict(run: RunResult) -> str:
    """The targets: without the archive >= 50k events/s sustained and <= 5 aggregate index operations per 1000
    events at 50k; with it >= 20k; at the low rate <= 30 operations per 1000 events, freshness p50 <= 1 s and
    the aggregates' indexing time <= 0.1x the archive's."""
    from pulse.bench.e2e import FORWARD_HOP_S
    from pulse.bench.indexing import AGGREGATES

    label = "with the archive" if run.archive else "without the archive"
    best = run.sustained
    goal = 20_000 if run.archive else 50_000
    line = (f"{label}: no step held (the lowest offered was {run.steps[0].offered:,.0f}/s)" if best is None else
            f"{label}: sustained {best.offered:,.0f} events/s at freshness p99 <= {best.limit_s:.1f}s "
            f"(direct p99 {best.p(0.99, False):.2f}s; forwarded p99 {best.p(0.99, True):.2f}s "
            f"<= {best.limit_s + FORWARD_HOP_S:.1f}s, one flush more)")
    line += f" ({_meets(best is not None and best.offered >= goal)} >= {goal // 1000}k/s)"
    high = [s for s in run.steps if s.offered >= 50_000]
    if high and not run.archive:
        ops = high[0].ops_per_1000(AGGREGATES)
        line += f"; at {high[0].offered:,.0f}/s {ops:.1f} aggregate index ops per 1000 events ({_meets(ops <= 5)} <= 5)"
    low = [s for s in run.steps if s.offered == LOW_RATE]
    if low:
        s = low[0]
        ops = s.ops_per_1000(AGGREGATES)
        line += (f"; at {LOW_RATE:,}/s {ops:.1f} aggregate index ops per 1000 events ({_meets(ops <= 30)} <= 30), "
                 f"freshness p50 {s.p(0.5):.2f}s ({_meets(s.p(0.5) <= 1.0)} <= 1s)")
        if s.time_ratio is not None:
            line += (f", aggregates' indexing time {s.time_ratio:.2f}x the archive's "
                     f"({_meets(s.time_ratio <= 0.1)} <= 0.1x)")
    return line


from pulse.cli import bench_failover_cmd  # noqa: E402,F401  (registers `pulse bench failover`)
