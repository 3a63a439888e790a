"""`pulse verify`: an independent recompute of every aggregate from the input, diffed against Elasticsearch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pulse.cli.aggregate_cmd import state_options
from pulse.cli.durations import Duration
from pulse.cli.output import table_console
from pulse.cli.store_cmd import instant, require_es
from pulse.config import Settings
from pulse.observe.server import metrics_addr_option
from pulse.verify.audit import Plan, Report
from pulse.verify.walk import Rules


@click.command()
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True, help="Input topic.")
@click.option("--ledger", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Recompute from a generator ledger instead of reading the topic (held in memory: small inputs).")
@click.option("--group", envvar="PULSE_GROUP", default="pulse-aggregator", show_default=True,
              help="The aggregator group whose results are checked (its recorded decisions are replayed).")
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True)
@state_options
@click.option("--from", "from_ms", envvar="PULSE_VERIFY_FROM", default=None, callback=instant,
              help="Only windows starting at or after this time (epoch ms, ISO time or 2h ago); the state before it "
                   "is rebuilt from a lead-in of the input, and users, items and counters are not compared "
                   "(docs/verify.md). After `pulse replay --from` the replay's start is found by itself.")
@click.option("--to", "to_ms", envvar="PULSE_VERIFY_TO", default=None, callback=instant,
              help="Only windows ending at or before this time; the input is read only a little past it.")
@click.option("--workers", envvar="PULSE_VERIFY_WORKERS", type=click.IntRange(1), default=os.cpu_count() or 1,
              show_default="the machine's cores", help="Partitions walked at once, one process each.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object (for programs).")
@click.option("--follow", is_flag=True, envvar="PULSE_VERIFY_FOLLOW",
              help="Keep going beside the running pipeline: check each window once it is final and stored, log each "
                   "difference, count them in metrics; Ctrl-C stops.")
@click.option("--interval", envvar="PULSE_VERIFY_INTERVAL", default="1s", show_default=True, type=Duration(0.1),
              help="With --follow: how often to walk up to what the aggregator committed.")
@click.option("--state-file", envvar="PULSE_VERIFY_STATE_FILE", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --follow: where it keeps the point every window was checked up to, so a "
                                 "restart reports nothing twice [default: <home>/verify/<group>-<index prefix>.json].")
@metrics_addr_option
@click.pass_obj
def verify(settings: Settings, topic: str, ledger: Path | None, group: str, index_prefix: str,
           windows: tuple[int, ...], grace: int, correct_within: int, forward_wait: int,
           from_ms: int | None, to_ms: int | None, workers: int, as_json: bool, follow: bool, interval: float,
           state_file: Path | None, metrics_addr: str | None) -> None:
    """Recompute every aggregate from the input and diff it against Elasticsearch: the proof of exactly-once.

    Each input partition is read once, in offset order; windows are compared as soon as they are final, users
    and items at the end, so memory follows the live state, not the input's length. Exits non-zero on any
    missing, extra or mismatched document, or on input the aggregator's own records contradict.
    """
    from pulse.verify.audit import run
    from pulse.verify.source import recorded_decisions

    require_es(settings)
    horizon = correct_within
    if follow and to_ms is not None:
        raise click.UsageError("--to ends a range; --follow keeps going: pass one of them")
    if follow:
        from pulse.verify.follow import Checkpoint

        rules = Rules(grace, horizon, forward_wait)
        state = state_file or settings.home / "verify" / f"{group}-{index_prefix}.json"
        plan = _plan(settings, topic, group, index_prefix, windows, rules, from_ms, None)
        resume = Checkpoint(state, plan).resume_from(sorted(plan.span), max(windows))
        if resume is not None and (from_ms is None or resume > from_ms):  # not from the beginning again
            plan = _plan(settings, topic, group, index_prefix, windows, rules, resume, None)
        _follow(plan, state, interval, metrics_addr)
        return
    if ledger:
        report = _from_ledger(settings, ledger, group, index_prefix, windows, grace, horizon, forward_wait)
    else:
        plan = _plan(settings, topic, group, index_prefix, windows, Rules(grace, horizon, forward_wait), from_ms,
                     to_ms)
        decisions = recorded_decisions(settings.bootstrap, group, topic)
        total = sum(end - start for start, end in plan.span.values())
        if as_json or not sys.stderr.isatty():
            report = run(plan, decisions, workers)
        else:
            columns = [TextColumn("[bold]verify"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeRemainingColumn()]
            with Progress(*columns, console=Console(stderr=True)) as bar:
                task = bar.add_task("verify", total=total, rate="")

                def advance(n: int) -> None:
                    bar.advance(task, n)
                    speed = bar.tasks[0].speed
                    bar.update(task, rate=f"{speed:,.0f} records/s" if speed else "")

                report = run(plan, decisions, workers, advance)
    _print(report, as_json)
    if not report.ok:
        sys.exit(1)


def _from_ledger(settings: Settings, ledger: Path, group: str, index_prefix: str, windows: tuple[int, ...],
                 grace: int, horizon: int, forward_wait: int) -> Report:
    import time

    from pulse.store.query import all_documents
    from pulse.verify.diff import diff_documents
    from pulse.verify.order import Counts
    from pulse.verify.reference import recompute
    from pulse.verify.source import forwarded_records, ledger_rows, recorded_decisions

    began = time.monotonic()
    rows, topic, partitions = ledger_rows(ledger)
    expected = recompute(rows, windows, grace, horizon, forward_wait_ms=forward_wait,
                         decisions=recorded_decisions(settings.bootstrap, group, topic),
                         forwarded=forwarded_records(settings.bootstrap, group), partitions=partitions)
    diff = diff_documents(expected, dict(all_documents(settings.es.client(), index_prefix)))
    counts = Counts(read=expected.produced, dead_lettered=expected.dead_lettered, late=expected.late,
                    duplicates=expected.duplicates, accepted=expected.accepted, forwarded=expected.forwarded,
                    corrected=expected.corrected)
    return Report(counts, diff, time.monotonic() - began, partitions)


def _plan(settings: Settings, topic: str, group: str, index_prefix: str, windows: tuple[int, ...], rules: Rules,
          from_ms: int | None, to_ms: int | None) -> Plan:
    """What to read and compare: all the aggregates were built from (the input since a replay's start, if they
    were replayed), or a range of windows with the state before it rebuilt (docs/verify.md)."""
    from dataclasses import replace

    from pulse.store.lineage import recorded
    from pulse.verify.ranges import TO_MARGIN_MS, exact, plan_scope
    from pulse.verify.source import input_span

    base = (recorded(settings.es.client(), topic, index_prefix) or {}).get("replayed_from")
    read_from, scope = plan_scope(from_ms, to_ms, base, rules.grace_ms, Plan.session_timeout_ms)
    stop = None if to_ms is None else to_ms + rules.grace_ms + TO_MARGIN_MS
    span = input_span(settings.bootstrap, topic, read_from, stop)
    at_base = read_from == base if base is not None else all(start == 0 for start, _ in span.values())
    scope = exact(scope, at_base, to_ms)
    rules = replace(rules, partitions=len(span), starts={p: start for p, (start, _) in span.items()},
                    unread_before_ms=scope.unread_before)
    return Plan(settings.bootstrap, settings.es, topic, group, index_prefix, windows, rules, span, scope=scope)


def _follow(plan: Plan, state: Path, interval: float, metrics_addr: str | None) -> None:
    import signal
    import threading
    import time

    from pulse.observe.server import serve
    from pulse.verify.follow import Round, follow

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    serve(metrics_addr)
    click.echo(f"verify: following {plan.topic} for group {plan.group} into {plan.index_prefix}-*; checkpoint {state}",
               err=True)

    waited: list[float] = []

    def said(r: Round, up_to: int) -> None:
        if r.waiting is not None:  # said once a minute while it lasts
            if not waited or time.monotonic() - waited[0] > 60:
                waited[:] = [time.monotonic()]
                click.echo(f"verify: waiting: {r.waiting}", err=True)
            return
        waited.clear()
        if r.checked or r.differences:
            click.echo(f"verify: {r.checked:,} window documents checked, {r.differences:,} differences; every window "
                       f"checked up to {_when(up_to)}", err=True)

    diff = follow(plan, state, interval, stop, said)
    click.echo(f"verify: stopped; {diff.checked:,} window documents checked, "
               f"{diff.differences:,} differences", err=True)


def _when(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "nothing yet"


def _print(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_json()))
        return
    c, d = report.counts, report.diff
    table = Table(title=f"pulse verify: {c.read:,} input records")
    for col in ("documents", "checked", "matched", "missing", "extra", "mismatched"):
        table.add_column(col, justify="right" if col != "documents" else "left")
    table.add_row("all", f"{d.checked:,}", f"{d.matched:,}", f"{d.missing:,}", f"{d.extra:,}", f"{d.mismatched:,}")
    for kind, n in sorted(d.by_kind.items()):
        table.add_row(f"  {kind}", f"{n:,}", "", "", "", "")
    table_console().print(table)
    click.echo(f"records: {c.accepted:,} accepted, {c.corrected:,} corrected, {c.dead_lettered:,} dead-lettered, "
               f"{c.late:,} too late, "
               f"{c.duplicates:,} duplicates ({c.forwarded:,} counted by the partition that owns their user, "
               f"each forwarded once); {c.read / max(report.seconds, 1e-9):,.0f} records/s")
    if not report.ok:
        click.echo(d.summary(10), err=True)
        return
    click.echo("OK: Elasticsearch equals the independent recompute")
