"""Case 6 of the real world: `pulse run` rides out a broker restart and an Elasticsearch restart (every stage
waits, logs, reconnects and resumes; none has to be restarted), restarts a stage that dies, and loses nothing:
the topic holds exactly what the generator counted as delivered, and `pulse verify` is exact."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from elasticsearch import Elasticsearch

from pulse.cli.run_cmd import GENERATE_SUMMARY
from pulse.config import Settings
from pulse.generate.summary import read_summaries
from pulse.store.indices import alias
from tests.names import unique
from tests.realworld.plain import count_records
from tests.realworld.private_stack import PrivateStack, free_port, private_stack, restart


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[PrivateStack]:
    with private_stack(settings, "test-restarts") as s:
        yield s


def _children(pid: int) -> dict[str, int]:
    """The pulse stages `pulse run` started, by verb."""
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,args="], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        child, args = line.strip().split(" ", 1)
        verb = re.search(r"-m pulse (\w+)", args)
        if verb:
            found[verb.group(1)] = int(child)
    return found


def _wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _accepted(url: str) -> int:
    try:
        return int(httpx.get(f"{url}/api/health", timeout=5).json().get("accepted") or 0)
    except (httpx.HTTPError, ValueError):
        return 0


@pytest.mark.slow
def test_pulse_run_rides_out_broker_and_elasticsearch_restarts_and_restarts_a_dead_stage(
        stack: PrivateStack, tmp_path: Path) -> None:
    tag = unique("restart")
    port = free_port()
    env = stack.env | {"PULSE_TOPIC": tag, "PULSE_GROUP": tag, "PULSE_INDEX_PREFIX": tag.replace("-", ""),
                       "PULSE_DASHBOARD_PORT": str(port), "PULSE_COLLECT_PORT": str(free_port()),
                       "PULSE_GEN_RATE": "300"}
    out = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen([sys.executable, "-m", "pulse", "run", "--keep-stack"], env=env, stdout=out,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    log = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
    try:
        _wait(lambda: _accepted(url) > 1000, 120, "the first aggregates")
        stages = _children(run.pid)
        assert set(stages) >= {"generate", "collect", "aggregate", "store", "archive", "dashboard"}, stages

        restart(stack, "kafka", down_s=25)
        before = _accepted(url)
        _wait(lambda: _accepted(url) > before + 3000, 120, "aggregates after the broker restart")
        restart(stack, "elasticsearch", down_s=10)
        _wait(lambda: _accepted(url) > before + 6000, 120, "aggregates after the Elasticsearch restart")
        assert run.poll() is None, log()
        assert _children(run.pid) == stages, f"a stage had to be restarted:\n{log()}"

        # a stage that dies is restarted, and the pipeline goes on
        subprocess.run(["kill", "-9", str(stages["aggregate"])], check=True)
        _wait(lambda: "aggregate      restarted" in log(), 30, "the aggregator's restart")
        after = _accepted(url)
        _wait(lambda: _accepted(url) > after + 1500, 90, "aggregates after the aggregator's restart")
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(120)
    assert code == 0, log()[-3000:]

    # what the generator counted as delivered is exactly what the topic holds
    runs = read_summaries(stack.settings.home / "logs" / GENERATE_SUMMARY)
    delivered, produced = (sum(run[n] for run in runs) for n in ("delivered", "produced"))
    assert delivered == produced > 0, runs
    assert count_records(stack.settings.bootstrap, tag) == delivered
    mine = {k: v for k, v in env.items() if k.startswith("PULSE_")}
    for verb in ("aggregate", "store"):  # what the last flush published after the writer had stopped
        drained = stack.pulse(verb, "--exit-when-idle", "2", **mine)
        assert drained.returncode == 0, drained.stderr[-2000:]
    verify = stack.pulse("verify", **mine)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_store_waits_out_an_elasticsearch_outage_without_loss(stack: PrivateStack) -> None:
    """Stop the private node for 20+ s while documents keep coming; the writer pauses with bounded memory, then
    catches up exactly."""
    tag = unique("out")
    mine = {"PULSE_TOPIC": tag, "PULSE_GROUP": tag, "PULSE_INDEX_PREFIX": tag.replace("-", "")}

    def pulse(*args: str) -> None:
        done = stack.pulse(*args, **mine)
        assert done.returncode == 0, done.stderr[-2000:]

    chaos = ("--rate", "0", "--no-progress", "--late-fraction", "0.03", "--duplicate-fraction", "0.03",
             "--invalid-fraction", "0.03", "--disorder-fraction", "0.03")
    pulse("setup", "--topic", tag)
    pulse("generate", "--count", "20000", "--seed", "5", *chaos)
    pulse("aggregate", "--exit-when-idle", "2")
    writer = subprocess.Popen([sys.executable, "-m", "pulse", "store"], env=stack.env | mine,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # the writer is mid-stream when the node stops: it has written some of the first input's documents
    es = Elasticsearch(f"http://127.0.0.1:{stack.settings.es_port}")
    windows = alias("windows", mine["PULSE_INDEX_PREFIX"])
    _wait(lambda: es.indices.exists_alias(name=windows) and es.count(index=windows)["count"] > 0, 60,
          "the writer's first documents")
    with stack.stopped("elasticsearch"):
        # more input is aggregated while Elasticsearch is down: Kafka buffers the documents
        pulse("generate", "--count", "20000", "--seed", "6", *chaos)
        pulse("aggregate", "--exit-when-idle", "2")
        rss = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rss.append(int(next(ln for ln in Path(f"/proc/{writer.pid}/status").read_text().splitlines()
                                if ln.startswith("VmRSS")).split()[1]))
            time.sleep(1)
        assert writer.poll() is None, "the writer must wait, not crash"
        assert max(rss) < 400_000, f"writer RSS grew to {max(rss)} kB during the outage"
    time.sleep(20)  # the writer's backoff reaches the restarted node before its shutdown flush needs it
    writer.send_signal(signal.SIGINT)
    assert writer.wait(120) == 0, writer.stderr.read().decode()[-2000:] if writer.stderr else ""
    pulse("store", "--exit-when-idle", "1.5")  # anything left
    pulse("verify")
