"""`pulse bench aggregate`: events/s of one aggregator process vs Flink, Quix Streams, the naive design and raw reads.

Every contender is a separate process with a fresh consumer group on the same pre-produced topic. Its time
runs from process start until all its output for the input is committed: for Pulse, until it exits after
publishing every document it would publish (details and users included: ``--exit-when-idle``); for the others,
until the group's committed offsets reach the end of every partition (their output is committed with them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pulse import kafkaio
from pulse.bench import flink
from pulse.bench.contenders import naive_index
from pulse.config import Settings
from pulse.connect.kafka import client_config
from pulse.errors import PulseError
from pulse.kafkaio import admin_client
from pulse.stack.process import interrupt
from pulse.topics import TopicSpec, ensure_topics, partition_count, repartition_topic

QUIX_VERSION = "3.28.1"
QUIX_SPEC = f"quixstreams=={QUIX_VERSION}"
EXIT_IDLE_S = 0.2
"""Pulse contenders stop after this long without input; the wait is part of their time (it is short)."""


@dataclass(frozen=True)
class Contender:
    name: str
    argv: list[str]
    note: str
    index: str | None = None  # an Elasticsearch index it fills, deleted as soon as it has been measured
    topic: str | None = None  # its own input topic (else the one every contender reads)
    forwards_to: str | None = None  # a repartition topic it must also have read to its end before its time stops
    key: str = ""  # its name on the command line (raw, pulse, unkeyed, crc32, quix, naive)
    exits: bool = False  # it stops by itself once its output is complete: timed to its exit
    group: str = ""  # its consumer group, when its command line has no ``--group``
    offsets_in_kafka: bool = True  # its progress is its group's committed offsets (Flink's is in its checkpoints)


@dataclass(frozen=True)
class Timed:
    seconds: float  # from process start until its group had committed everything
    cpu: float  # CPU seconds the process had used by then (all its threads)
    peak_rss_bytes: int = 0  # its peak resident set (known when it exited by itself)


@dataclass(frozen=True)
class Result:
    name: str
    events: int
    seconds: float
    note: str
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def per_cpu(self) -> float:
        """Events per CPU-second: throughput per core, steadier than wall time on a noisy VM."""
        return self.events / self.cpu if self.cpu > 0 else 0.0


def compile_sources() -> Path:
    """Byte-compile Pulse's modules, as installing a package would. An editable install run with
    PYTHONDONTWRITEBYTECODE (set on these machines) compiles every module from source at each start: about 30 ms
    of `pulse aggregate`'s start-up, and a little of the raw consumer's (both import from this package)."""
    import compileall

    import pulse

    package = Path(pulse.__file__).parent
    compileall.compile_dir(str(package), quiet=1)
    return package


def quix_python(settings: Settings, progress: object = print) -> Path:
    """A virtualenv with Quix Streams (benchmark-only; it pins an older confluent-kafka than Pulse)."""
    venv = settings.home / "bench-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".quix-installed"
    if not stamp.exists():
        progress("installing Quix Streams into a benchmark virtualenv (once)")  # type: ignore[operator]
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_SPEC], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise PulseError(f"installing {QUIX_SPEC} failed: {proc.stderr.strip()[-300:]}")
        stamp.write_text(QUIX_SPEC)
    return python


def unkeyed_topic(topic: str) -> str:
    """The same events as ``topic``, sent without keys (to random partitions)."""
    return f"{topic}-unkeyed"


def crc32_topic(topic: str) -> str:
    """The same events as ``topic``, keyed by user id and partitioned as librdkafka clients do (CRC-32)."""
    return f"{topic}-crc32"


FOREIGN = {"unkeyed": (unkeyed_topic, "without keys", {"null_keys": 1.0}),
           "crc32": (crc32_topic, "keyed with librdkafka's default partitioner", {"crc32_keys": 1.0})}
"""The contenders on the same events as a foreign producer writes them: topic, how, and the producer's shares."""


def contenders(settings: Settings, topic: str, which: list[str], quix: Path | None,
               flink_cp: str | None = None) -> list[Contender]:
    tag = uuid.uuid4().hex[:6]
    b = settings.bootstrap
    py = [sys.executable, "-m"]
    fetch = ["--config", json.dumps(kafkaio.BULK_FETCH)]  # the fetch sizes a backlog reader is fastest with
    naive_group = f"bench-naive-{tag}"
    table = {
        "pulse": Contender("pulse aggregate (exactly-once)", [*py, "pulse", "aggregate", "--topic", topic, "--group",
                                                              f"bench-pulse-{tag}", "--instance", f"bench-{tag}",
                                                              "--exit-when-idle", str(EXIT_IDLE_S)],
                           "all metrics, changelog + aggregates in Kafka transactions; timed until every "
                           "document (details, users) is committed", exits=True),
        "unkeyed": Contender("pulse aggregate, unkeyed input (exactly-once)",
                             [*py, "pulse", "aggregate", "--topic", unkeyed_topic(topic), "--group",
                              f"bench-unkeyed-{tag}", "--instance", f"bench-{tag}", "--exit-when-idle",
                              str(EXIT_IDLE_S)],
                             "the same events with null keys: 5/6 forwarded through the repartition topic",
                             topic=unkeyed_topic(topic), forwards_to=repartition_topic(f"bench-unkeyed-{tag}"),
                             exits=True),
        "crc32": Contender("pulse aggregate, librdkafka-keyed input (exactly-once)",
                           [*py, "pulse", "aggregate", "--topic", crc32_topic(topic), "--group",
                            f"bench-crc32-{tag}", "--instance", f"bench-{tag}", "--exit-when-idle", str(EXIT_IDLE_S)],
                           "the same events keyed by user id, CRC-32 partitioned: about 5/6 forwarded",
                           topic=crc32_topic(topic), forwards_to=repartition_topic(f"bench-crc32-{tag}"),
                           exits=True),
        "raw": Contender("raw consume-and-discard (ceiling)", [*py, "pulse.bench.contenders", "raw", "--broker", b,
                                                               "--topic", topic, "--group", f"bench-raw-{tag}", *fetch],
                         "confluent-kafka, batches of 20k"),
        "naive": Contender("naive (dicts, 1 ES doc/event)", [*py, "pulse.bench.contenders", "naive", "--broker", b,
                                                             "--topic", topic, "--group", naive_group,
                                                             "--es-url", settings.es_url, *fetch],
                           "at-least-once, bulk of 500 docs", naive_index(naive_group)),
    }
    if quix is not None:
        app = Path(str(resources.files("pulse.bench") / "quix_app.py"))
        state_dir = settings.home / "bench-quix-state" / tag
        table["quix"] = Contender(f"Quix Streams {QUIX_VERSION} (exactly-once)",
                                  [str(quix), str(app), "--broker", b, "--topic", topic, "--group", f"bench-quix-{tag}",
                                   "--state-dir", str(state_dir)],
                                  "default settings (5 s commits); per-type counts and revenue per window (final), "
                                  "user state; no dedup, unique users, funnel, items, categories, dead letters")
    if flink_cp is not None:
        group = f"bench-flink-{tag}"
        ensure_topics(settings.bootstrap, [TopicSpec(flink.output_topic(group), 6, {})])
        table["flink"] = Contender(f"{flink.label()} (exactly-once)", flink.argv(settings, flink_cp, topic, group),
                                   f"DataStream API on a local MiniCluster, default parallelism (cores), checkpoints "
                                   f"every {flink.CHECKPOINT_MS} ms commit the Kafka sink's transactions; counts, "
                                   "revenue, status, breakdowns, items, distinct users (exact), quantile bins, user "
                                   "state, dedup, dead letters, late; windows publish only when they close; no "
                                   "session funnel; timed to its exit (bounded source)", exits=True, group=group,
                                   offsets_in_kafka=False)
    return [replace(table[name], key=name) for name in which if name in table]


def _group_of(argv: list[str]) -> str:
    return argv[argv.index("--group") + 1]


def _stat_cpu(stat: Path) -> float:
    """User + system CPU seconds from a `/proc` ``stat`` file (of a process, its exited threads included, or of
    one thread)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, its exited threads included."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def run_until_committed(settings: Settings, name: str, argv: list[str], group: str, topic: str,
                        ends: dict[int, int], timeout: float, log: Path,
                        on_poll: Callable[[int], None] | None = None, forwards_to: str | None = None,
                        exits: bool = False, offsets_in_kafka: bool = True) -> Timed:
    """Start a consumer process and time it until its group committed every partition to ``ends`` (so exactly-
    once contenders are timed to their last commit), and every record it forwarded through ``forwards_to``, with
    the CPU it had used by then; then stop it. ``exits``: it stops by itself once all its output is committed;
    timed to its exit, which must come after those commits (``offsets_in_kafka=False``: its exit with status 0 says
    its bounded input was read and its output committed, as Flink's job does). ``on_poll`` gets its pid."""
    watcher = Consumer(client_config(settings.bootstrap, {"group.id": group, "enable.auto.commit": False}))
    parts = [TopicPartition(topic, p) for p in ends]

    def complete() -> bool:
        committed = watcher.committed(parts, timeout=10)
        return all(tp.offset >= ends[tp.partition] for tp in committed) \
            and (forwards_to is None or _forwarded_all(watcher, forwards_to, list(ends)))

    with log.open("ab") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while True:
                if exits:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        proc.returncode = os.waitstatus_to_exitcode(status)
                        if proc.returncode != 0 or (offsets_in_kafka and not complete()):
                            raise PulseError(f"{name} exited with {proc.returncode} before its work was committed; "
                                             f"see {log}")
                        return Timed(time.monotonic() - t0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)
                elif proc.poll() is not None:
                    raise PulseError(f"{name} exited early with {proc.returncode}; see {log}")
                if time.monotonic() - t0 > timeout:
                    raise PulseError(f"{name} did not finish within {timeout:.0f}s; see {log}")
                if on_poll is not None:
                    on_poll(proc.pid)
                if not exits and complete():
                    return Timed(time.monotonic() - t0, cpu_seconds(proc.pid))
                time.sleep(0.02 if exits else 0.05)  # fine-grained: the fastest contenders finish in about 2 s
        finally:
            if proc.returncode is None:
                interrupt(proc)
            watcher.close()


def _forwarded_all(watcher: Consumer, topic: str, partitions: list[int]) -> bool:
    """The group committed every partition of its repartition topic to its end (the last record of a
    transactional topic is a commit marker, which no consumer takes)."""
    parts = [TopicPartition(topic, p) for p in partitions]
    try:
        committed = watcher.committed(parts, timeout=10)
        highs = [watcher.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
    except KafkaException:  # not created yet
        return False
    return all(high <= 0 or tp.offset >= high - 1 for tp, high in zip(committed, highs, strict=True))


def measure(settings: Settings, contender: Contender, topic: str, ends: dict[int, int], timeout: float,
            log: Path) -> Result:
    """``topic`` and ``ends``: the common input, unless the contender reads its own (then read here)."""
    if contender.topic is not None:
        topic, ends = contender.topic, end_offsets(settings, contender.topic)
    group = contender.group or _group_of(contender.argv)
    timed = run_until_committed(settings, contender.name, contender.argv, group, topic, ends,
                                timeout, log, forwards_to=contender.forwards_to, exits=contender.exits,
                                offsets_in_kafka=contender.offsets_in_kafka)
    if contender.index is not None:
        _drop_index(settings, contender.index)
    return Result(contender.name, sum(ends.values()), timed.seconds, contender.note, timed.cpu)


def _drop_index(settings: Settings, index: str) -> None:
    """Delete the naive design's index of every event at once: left until the run ends, the node's merges of
    hundreds of thousands of documents go on competing for the CPU with the next contenders (measured: Pulse
    at 158k, 101k and 67k events/s in three rounds that each followed one)."""

    settings.es.client().indices.delete(index=index, ignore_unavailable=True)


JIT_QUIET_S = 0.25
"""A Pulse run during which the broker's JIT compiler threads used at most this much CPU counts as warm. They never
go fully quiet within a benchmark: after a restart, 15 runs measured 1.07, 0.61, 0.69, 0.39, 0.34, 0.41, 0.33,
0.13, 0.32, 0.16, 0.18, 0.21, 0.25, 0.15 and 0.35 s."""


def warmed(seconds: list[float], jit: list[float] | None = None, tolerance: float = 0.1) -> bool:
    """Whether a series of untimed runs has reached the steady state: the latest is no more than ``tolerance``
    faster than the best before it, and (when the broker's JIT time per run, ``jit``, is known) the broker's JIT
    compiler was quiet during it. A broker fresh from start-up runs its transactional path interpreted: Pulse's
    first runs after `pulse stack up` took 3.9, 2.5, 2.6, 2.3, 1.7 and 1.4 s while the broker's request threads
    went from 2.5 to 0.25 s of CPU per run; its JIT compiler threads kept compiling (0.4-0.7 s of CPU per Pulse
    run) for longer than Pulse's time showed; raw reads barely change."""
    steady = len(seconds) >= 2 and seconds[-1] >= (1 - tolerance) * min(seconds[:-1])
    return steady and (not jit or jit[-1] <= JIT_QUIET_S)


def jit_seconds(pid: int) -> float:
    """CPU seconds the JVM ``pid`` has spent in its (live) JIT compiler threads, as HotSpot names them."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith(("C1 Compiler", "C2 Compiler")):
                total += _stat_cpu(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
    return total


def warm_up(settings: Settings, topic: str, ends: dict[int, int], timeout: float, log: Path, limit: int,
            on_run: Callable[[float, float | None], None]) -> tuple[list[float], list[float]]:
    """Untimed runs of the raw consumer and Pulse, in turn, until Pulse's time has stopped improving and the
    broker's JIT compiler was quiet during the last one, or ``limit`` runs. Returns Pulse's times and the JIT
    seconds of each (empty if the broker's pid is unknown). All contenders are then measured against the same
    warmed broker."""
    from pulse.stack.manager import services

    broker = next((svc.process.pid() for svc in services(settings) if svc.name == "kafka"), None)
    seconds: list[float] = []
    jit: list[float] = []
    while len(seconds) < limit and not warmed(seconds, jit):
        raw, pulse = contenders(settings, topic, ["raw", "pulse"], None)  # fresh consumer groups every run
        measure(settings, raw, topic, ends, timeout, log)
        before = jit_seconds(broker) if broker else 0.0
        seconds.append(measure(settings, pulse, topic, ends, timeout, log).seconds)
        if broker:
            jit.append(jit_seconds(broker) - before)
        on_run(seconds[-1], jit[-1] if jit else None)
    return seconds, jit


def per_round_ratios(rounds: list[dict[str, Result]], ours: str, peer: str) -> list[float]:
    """``ours``/``peer`` events/s within each round: contenders of one round ran minutes apart at most, so the
    machine's slow phases (this is a shared 2-core VM) hit both sides of a ratio more evenly than across rounds."""
    return [r[ours].rate / r[peer].rate for r in rounds if ours in r and peer in r]


def prepare_input(settings: Settings, topic: str, count: int, partitions: int, null_keys: float = 0.0,
                  start_ms: int | None = None, crc32_keys: float = 0.0) -> dict[int, int]:
    """Produce the input every contender reads: generated traffic with 1 % each of invalid, duplicate, late and
    out-of-order events, starting 10 minutes back (or at ``start_ms``), ``null_keys`` of it without keys and
    ``crc32_keys`` of it partitioned as librdkafka clients do. Returns the end offsets each contender must commit
    to."""
    from pulse.generate.chaos import Chaos, ChaosConfig
    from pulse.generate.producer import EventProducer, RunLimits
    from pulse.generate.traffic import Traffic, TrafficConfig
    from pulse.topics import ensure_topics, input_topics

    ensure_topics(settings.bootstrap, input_topics(topic, partitions, 24))
    start = start_ms if start_ms is not None else int(time.time() * 1000) - 600_000
    traffic = Traffic(TrafficConfig(seed=5, start_ms=start))
    producer = EventProducer(settings.bootstrap, topic, partitions, null_keys=null_keys, crc32_keys=crc32_keys)
    producer.run(Chaos(traffic, ChaosConfig(0.01, 0.01, 0.01, 0.01)), RunLimits(count=count), lambda: 0.0)
    return end_offsets(settings, topic)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Where every contender must have committed to: the end of each partition of the pre-produced topic."""
    admin = admin_client(settings.bootstrap)
    return kafkaio.end_offsets(admin, topic, list(range(partition_count(settings.bootstrap, topic))))


def cleanup(settings: Settings) -> None:
    shutil.rmtree(settings.home / "bench-quix-state", ignore_errors=True)
