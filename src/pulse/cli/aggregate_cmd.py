"""`pulse aggregate`: run one exactly-once aggregator instance (start more for scale-out)."""

from __future__ import annotations

import fcntl
import gc
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from pulse.aggregate.config import StateConfig
from pulse.aggregate.flush_policy import FlushPolicy
from pulse.aggregate.group import Membership
from pulse.aggregate.windows import label, parse_sizes
from pulse.cli.durations import Duration
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.observe.server import every, metrics_addr_option, serve
from pulse.topics import aggregator_topics, ensure_topics, input_topics, partition_count, timestamp_type

if TYPE_CHECKING:
    from pulse.aggregate.engine import Engine, EngineStats


def _readiness(engine: list[Engine], bootstrap: str) -> str | None:
    """Ready: the group assigned this instance its partitions, their state is restored, the broker answers."""
    if not engine or not engine[0].joined:
        return "waiting for the group to assign partitions and for their state to be restored"
    from pulse.kafkaio import broker_problem

    return broker_problem(bootstrap, timeout=2.0)


def claim_instance_slot(home: Path, group: str) -> tuple[str, IO[str]]:
    """The lowest free slot number on this host (held by a file lock until exit): a restarted instance gets
    its old transactional id back and fences its crashed predecessor; concurrent instances never collide."""
    folder = home / "aggregate" / group
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(1024):
        handle = (folder / f"slot-{slot}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return f"{socket.gethostname()}-{slot}", handle
    raise PulseError(f"no free aggregator slot under {folder}")


def _sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return parse_sizes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


forward_wait_option = click.option(
    "--forward-wait", envvar="PULSE_FORWARD_WAIT", default="5m", show_default=True, type=Duration(0, ms=True),
    help="How far (event time) an idle partition (nothing to read, quiet for --idle-timeout) may be behind the "
         "most advanced one and still hold back the others' windows: an empty partition never does [env "
         "PULSE_FORWARD_WAIT].")


def state_options(command: Callable[..., object]) -> Callable[..., object]:
    """The options that decide what the aggregates are (aggregate, verify and replay must agree on them):
    --windows, --grace, --correct-within, --forward-wait."""
    for option in reversed((
        click.option("--windows", envvar="PULSE_WINDOWS", default=",".join(map(label, StateConfig.window_sizes)),
                     show_default=True, callback=_sizes,
                     help="Tumbling window sizes (windows up to 1h count users exactly; from 1h on they also "
                          "carry a HyperLogLog, and longer ones only that)."),
        click.option("--grace", envvar="PULSE_GRACE", default="30s", show_default=True, type=Duration(0, ms=True),
                     help="Allowed lateness: the watermark is the max event time seen minus this."),
        click.option("--correct-within", envvar="PULSE_CORRECT_WITHIN",
                     default=label(StateConfig.correct_within_ms), show_default=True, type=Duration(0, ms=True),
                     help="The correction horizon: an event below the watermark by up to this much still counts, "
                          "as a correction published beside its windows' documents (later ones go to "
                          "<topic>.late, reason beyond_horizon). An event_id is a duplicate for as long. The input "
                          "topic's retention must exceed it (pulse setup checks)."),
        forward_wait_option,
    )):
        command = option(command)
    return command


@click.command()
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True, help="Input topic.")
@click.option("--group", envvar="PULSE_GROUP", default="pulse-aggregator", show_default=True,
              help="Consumer group; also names the changelog and aggregates topics.")
@state_options
@click.option("--flush-interval", envvar="PULSE_FLUSH_INTERVAL", default="1s", show_default=True,
              type=Duration(0.05, 60), help="Time between flushes (transactions).")
@click.option("--backlog-flush-interval", envvar="PULSE_BACKLOG_FLUSH_INTERVAL", default="5s", show_default=True,
              type=Duration(0.05, 600),
              help="Time between flushes while reading a backlog (full batches); a backlog is published at once "
                   "when read to its end.")
@click.option("--detail-interval", envvar="PULSE_DETAIL_INTERVAL",
              default=label(round(FlushPolicy.detail_interval_s * 1000)), show_default=True,
              type=Duration(0.05, 600),
              help="How often a flush publishes the breakdowns and user sketches of windows from a minute on, and "
                   "the item shards that are due (each window's changed shards at most every half of its size and "
                   "1/12 of it, between a minute and a quarter hour; the item state every five minutes). Summaries, "
                   "and the shorter windows' breakdowns, go every flush.")
@click.option("--user-writes", envvar="PULSE_USER_WRITES", default=FlushPolicy.user_writes_per_1000,
              show_default=True,
              type=click.FloatRange(0, 1000),
              help="User documents published per 1000 events a partition accepts, oldest change first, each flush "
                   "(at least --user-floor): Elasticsearch's cost for users stays the same per event at any rate.")
@click.option("--user-floor", envvar="PULSE_USER_FLOOR", default=FlushPolicy.user_floor, show_default=True,
              type=click.IntRange(0),
              help="User documents a partition may publish on any flush, however few events it accepted.")
@click.option("--user-max-delay", envvar="PULSE_USER_MAX_DELAY", default=label(StateConfig.user_max_delay_ms),
              show_default=True,
              type=Duration(0, 86_400),
              help="A changed user's document goes out after this long at the latest, whatever --user-writes allows.")
@click.option("--compact-after", envvar="PULSE_COMPACT_AFTER", default=50_000, show_default=True,
              type=click.IntRange(1),
              help="User/session changes logged per partition before they are folded into a changelog snapshot "
                   "(also waits for twice the live state), so restore reads live state rather than history.")
@click.option("--idle-timeout", envvar="PULSE_IDLE_TIMEOUT", default="10s", show_default=True,
              type=Duration(0.1),
              help="Time without input before a partition's windows close by wall clock.")
@click.option("--stall-timeout", envvar="PULSE_STALL_TIMEOUT", default="60s", show_default=True,
              type=Duration(0.1),
              help="Time a partition's watermark may stand still (its aggregator died or hangs) before the partitions "
                   "it holds back treat it as idle: then it holds their windows back by at most --forward-wait.")
@click.option("--instance", envvar="PULSE_INSTANCE", default=None,
              help="Stable instance id for the transactional id [default: host name + a free local slot].")
@click.option("--max-seconds", type=Duration(0.1), default=None, help="Stop after this long.")
@click.option("--exit-when-idle", type=Duration(0.1), default=None,
              help="Stop once no input has arrived for this long (batch jobs, tests).")
@metrics_addr_option
@click.pass_obj
def aggregate(settings: Settings, topic: str, group: str, windows: tuple[int, ...], grace: int,
              correct_within: int, forward_wait: int, flush_interval: float, backlog_flush_interval: float,
              detail_interval: float, user_writes: float, user_floor: int, user_max_delay: float,
              compact_after: int, idle_timeout: float,
              stall_timeout: float, instance: str | None, max_seconds: float | None, exit_when_idle: float | None,
              metrics_addr: str | None) -> None:
    """Consume interactions and maintain exactly-once windowed metrics and user/item state.

    Output: the compacted `<group>.changelog` (state) and `<group>.aggregates` (documents) topics, plus dead
    letters in `<topic>.dlq` and late events in `<topic>.late`. Run more instances to scale out.
    """
    try:
        state_cfg = StateConfig(window_sizes=windows, grace_ms=grace, correct_within_ms=correct_within,
                                compact_after=compact_after, forward_wait_ms=forward_wait,
                                user_max_delay_ms=round(user_max_delay * 1000))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    def side_topics() -> None:
        """Side topics are partitioned like the input (which must exist); their retention is the operator's
        business. Looked up and created while the consumer joins its group (0.1-0.2 s of start-up)."""
        partitions = partition_count(settings.bootstrap, topic)
        ensure_topics(settings.bootstrap, input_topics(topic, partitions)[1:]
                      + aggregator_topics(group, partitions), compare_config=False)
        if timestamp_type(settings.bootstrap, topic) != "LogAppendTime":
            click.echo(f"aggregate: warning: {topic} keeps the producers' timestamps (CreateTime), so event times "
                       "are checked against the producers' own clocks; `pulse setup` switches it to LogAppendTime",
                       err=True)

    engine: list[Engine] = []
    serve(metrics_addr, every(2.0, lambda: _readiness(engine, settings.bootstrap)))
    lock = None
    if instance is None:
        instance, lock = claim_instance_slot(settings.home, group)
    # Join the group now and load the engine (a tenth of a second of imports) while the broker assigns partitions.
    membership = Membership(settings.bootstrap, group, topic)
    from pulse.aggregate.engine import Engine, EngineConfig

    cfg = EngineConfig(bootstrap=settings.bootstrap, topic=topic, group=group, instance=instance, state=state_cfg,
                       flush_interval_s=flush_interval, backlog_flush_interval_s=backlog_flush_interval,
                       detail_interval_s=detail_interval, user_writes_per_1000=user_writes, user_floor=user_floor,
                       idle_timeout_s=idle_timeout, stall_timeout_s=stall_timeout)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if max_seconds:
        timer = threading.Timer(max_seconds, stop.set)
        timer.daemon = True
        timer.start()
    click.echo(f"aggregate: instance {instance}, group {group}, windows {','.join(map(label, windows))}, "
               f"grace {label(grace)}, flush every {flush_interval}s", err=True)
    started = time.monotonic()
    last_log = [started]

    def progress(stats: EngineStats) -> None:
        now = time.monotonic()
        if now - last_log[0] >= 5:
            last_log[0] = now
            click.echo(f"aggregate: {stats.consumed:,} consumed ({stats.consumed / (now - started):,.0f}/s), "
                       f"{stats.flushes} flushes, {stats.docs:,} docs", err=True)

    # Every consumed record is a short-lived, acyclic Python object (freed by reference counting): collect
    # cycles far less often than CPython's default of every 700 allocations.
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)
    # The routing thread takes the GIL once per batch (for the validator's few records) while this thread holds it
    # nearly all the time; at CPython's 5 ms switch interval it waited up to that long for every batch.
    sys.setswitchinterval(0.0005)
    engine.append(Engine(cfg, on_flush=progress, prepare=side_topics, membership=membership))
    stats = engine[0].run(stop, exit_when_idle)
    click.echo(f"aggregate: stopped after {stats.consumed:,} records ({stats.forwarded:,} forwarded to the partition "
               f"that owns their user), {stats.flushes} flushes, {stats.docs:,} docs",
               err=True)
    if lock:
        lock.close()
