"""Case 6 of the real world: `pulse run` rides out a broker restart and an Elasticsearch restart (every stage
waits, logs, reconnects and resumes; none has to be restarted), restarts a stage that dies, and loses nothing:
the topic holds exactly what the generator counted as delivered, and `pulse verify` is exact."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pulse.config import Settings
from pulse.store.indices import alias
from tests.names import unique
from tests.realworld.private_stack import PrivateStack, private_stack, restart
from tests.realworld.pulse_run import assert_delivered_and_exact, children, pulse_run, wait


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[PrivateStack]:
    with private_stack(settings, "test-restarts") as s:
        yield s


@pytest.mark.slow
def test_pulse_run_rides_out_broker_and_elasticsearch_restarts_and_restarts_a_dead_stage(
        stack: PrivateStack, tmp_path: Path) -> None:
    with pulse_run(stack, tmp_path, "restart", rate=300) as run:
        wait(lambda: run.accepted() > 1000, 120, "the first aggregates")
        stages = children(run.proc.pid)
        assert set(stages) >= {"generate", "collect", "aggregate", "store", "archive", "dashboard"}, stages

        restart(stack, "kafka", down_s=25)
        run.progresses(3000, 120, "aggregates after the broker restart")
        restart(stack, "elasticsearch", down_s=10)
        run.progresses(3000, 120, "aggregates after the Elasticsearch restart")
        assert run.proc.poll() is None, run.log()
        run.stages_unchanged(stages)

        # a stage that dies is restarted, and the pipeline goes on
        subprocess.run(["kill", "-9", str(stages["aggregate"])], check=True)
        wait(lambda: "aggregate      restarted" in run.log(), 30, "the aggregator's restart")
        run.progresses(1500, 90, "aggregates after the aggregator's restart")
    assert_delivered_and_exact(run)


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
    wait(lambda: es.indices.exists_alias(name=windows) and es.count(index=windows)["count"] > 0, 60,
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
