"""Pulse on a secured stack (`pulse stack up --secure`: Kafka on SASL_SSL with SCRAM-SHA-512, Elasticsearch with
TLS and authentication): the whole pipeline ends exact, refused credentials are one line, no secret is ever
shown, and the aggregator's /metrics match what was produced."""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pulse.aggregate.model import OUTCOMES
from pulse.cli.run_cmd import GENERATE_SUMMARY
from pulse.config import Settings
from pulse.generate.summary import read_summaries
from pulse.stack import manager
from pulse.stack.secure import SecureMaterial
from tests.names import unique
from tests.realworld.plain import event, now_ms
from tests.realworld.private_stack import PrivateStack, free_port, private_stack

SECRETS = ("keystore", "kafka", "broker", "es")


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[PrivateStack]:
    with private_stack(settings, "test-secure", secure=True) as s:
        yield s


def test_pulse_stack_env_prints_what_points_every_command_at_the_stack(stack: PrivateStack) -> None:
    """`eval "$(pulse stack env)"`: the exports are the private stack's settings, secrets only as file paths."""
    plain = {k: v for k, v in stack.env.items() if k not in manager.client_env(stack.settings)}
    done = subprocess.run([sys.executable, "-m", "pulse", "stack", "env"], env=plain, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in done.stdout.splitlines())
    assert exported == manager.client_env(stack.settings)
    assert exported["PULSE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and exported["PULSE_ES_URL"].startswith("https")
    for name in SECRETS:
        assert _material(stack).secret(name) not in done.stdout


def _material(stack: PrivateStack) -> SecureMaterial:
    return SecureMaterial.of(stack.settings.home)


def _secure(stack: PrivateStack) -> dict[str, str]:
    """A plain client's settings for the secure broker (what a user's own producer would give)."""
    return stack.kafka_client


def _mine(tag: str) -> dict[str, str]:
    return {"PULSE_TOPIC": tag, "PULSE_GROUP": tag, "PULSE_INDEX_PREFIX": tag.replace("-", "")}


def _ends(stack: PrivateStack, topic: str) -> int:
    consumer = Consumer(_secure(stack) | {"group.id": unique("ends")})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def _assert_no_secret(stack: PrivateStack, *texts: str) -> None:
    """No secret of the stack in ``texts`` nor in any log Pulse or the servers wrote under the stack's home."""
    logs = [p.read_text(errors="replace") for p in stack.settings.home.rglob("*.log") if p.is_file()]
    for name in SECRETS:
        secret = _material(stack).secret(name)
        for text in (*texts, *logs):
            assert secret not in text, f"the {name} secret was shown"


@pytest.mark.slow
def test_the_whole_pipeline_runs_on_the_secure_stack_and_ends_exact(stack: PrivateStack, tmp_path: Path) -> None:
    """`pulse run` (generate → aggregate → store → archive → dashboard) with the `pulse stack env` settings, plus a
    plain SASL_SSL client's unkeyed records; then `pulse verify` is exact and nothing showed a secret."""
    tag, port = unique("secure"), free_port()
    env = stack.env | _mine(tag) | {"PULSE_DASHBOARD_PORT": str(port), "PULSE_COLLECT_PORT": str(free_port()),
                                    "PULSE_GEN_RATE": "300"}
    assert "PULSE_KAFKA_SASL_PASSWORD_FILE" in env and "PULSE_ES_PASSWORD_FILE" in env
    log = tmp_path / "run.log"
    run = subprocess.Popen([sys.executable, "-m", "pulse", "run", "--keep-stack"], env=env, stdout=log.open("wb"),
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/health"
    accepted = 0
    try:
        deadline = time.monotonic() + 120
        while accepted < 1500 and time.monotonic() < deadline:
            time.sleep(1)
            with contextlib.suppress(httpx.HTTPError, ValueError):
                accepted = int(httpx.get(url, timeout=5).json().get("accepted") or 0)
        assert accepted >= 1500, log.read_text()[-3000:]
        # `pulse run` gave every stage a metrics port and printed it; each is ready on the secure stack
        endpoints = dict(re.findall(r"^(\w+) +running .*metrics: (http://127\.0\.0\.1:\d+)/metrics", log.read_text(),
                                    re.MULTILINE))
        assert set(endpoints) == {"generate", "collect", "aggregate", "store", "archive", "dashboard"}, log.read_text()
        for stage, base in endpoints.items():
            assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200, stage
        for stage, metric in (("generate", "pulse_events_delivered_total"), ("aggregate", "pulse_records_total"),
                              ("store", "pulse_es_documents_written_total"),
                              ("archive", "pulse_es_documents_written_total")):
            assert metric in httpx.get(f"{endpoints[stage]}/metrics", timeout=10).text, stage
        producer = Producer(_secure(stack))  # the default partitioner, no key: other people's input
        for n in range(2000):
            producer.produce(tag, orjson.dumps(event(n, now_ms(), event_id=f"plain-{n}")))
        assert producer.flush(30) == 0
        time.sleep(3)
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(120)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    outputs = [output]
    for verb in ("aggregate", "store"):  # what the last flush published after the writer had stopped
        drained = stack.pulse(verb, "--exit-when-idle", "4", **_mine(tag))
        assert drained.returncode == 0, drained.stderr[-2000:]
        outputs += [drained.stdout, drained.stderr]
    delivered = sum(run["delivered"] for run in read_summaries(stack.settings.home / "logs" / GENERATE_SUMMARY))
    assert _ends(stack, tag) == delivered + 2000
    verify = stack.pulse("verify", **_mine(tag))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    outputs += [verify.stdout, verify.stderr]
    _assert_no_secret(stack, *outputs)


def _one_line_refusal(done: subprocess.CompletedProcess[str], what: str, wrong: str) -> None:
    assert done.returncode != 0
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and what in lines[0], lines
    assert wrong not in done.stdout + done.stderr


def test_wrong_credentials_are_one_line_naming_what_was_refused_and_never_shown(stack: PrivateStack) -> None:
    tag = unique("refused")
    wrong = "Wr0ng-" + unique("pw")
    kafka = {k: v for k, v in stack.env.items() if k != "PULSE_KAFKA_SASL_PASSWORD_FILE"}
    done = subprocess.run([sys.executable, "-m", "pulse", "setup", "--topic", tag], capture_output=True, text=True,
                          env=kafka | _mine(tag) | {"PULSE_KAFKA_SASL_PASSWORD": wrong}, timeout=60)
    _one_line_refusal(done, "refused the credentials", wrong)
    es = {k: v for k, v in stack.env.items() if k != "PULSE_ES_PASSWORD_FILE"}
    done = subprocess.run([sys.executable, "-m", "pulse", "store", "--exit-when-idle", "1"], capture_output=True,
                          text=True, timeout=60, env=es | _mine(tag) | {"PULSE_ES_PASSWORD": wrong})
    _one_line_refusal(done, "refused the credentials (401)", wrong)
    in_url = es | {"PULSE_ES_URL": stack.env["PULSE_ES_URL"].replace("https://", f"https://pulse:{wrong}@")}
    in_url.pop("PULSE_ES_USERNAME")
    done = subprocess.run([sys.executable, "-m", "pulse", "store", "--exit-when-idle", "1"], capture_output=True,
                          text=True, timeout=60, env=in_url | _mine(tag))
    _one_line_refusal(done, "refused the credentials (401)", wrong)
    # the dashboard's health endpoint says the store refused, without the password
    port = free_port()
    dashboard = subprocess.Popen([sys.executable, "-m", "pulse", "dashboard", "--port", str(port)],
                                 env=in_url | _mine(tag), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = ""
        for _ in range(60):
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                body = reply.text
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert body and wrong not in body
    finally:
        dashboard.send_signal(signal.SIGINT)
        out = dashboard.communicate(timeout=30)[0].decode(errors="replace")
    assert wrong not in out


def _scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(pulse_[^ ]+) ([0-9.e+-]+)$", text, re.MULTILINE)}


def _outcomes(sample: dict[str, float]) -> dict[str, int]:
    return {o: int(sample.get(f'pulse_records_total{{outcome="{o}"}}', 0))
            for o in OUTCOMES}


def test_the_aggregators_metrics_match_what_was_produced(stack: PrivateStack) -> None:
    """Known traffic with every kind of bad record; while it flows, counters + lag never exceed the topic's end and
    the lag is seen above 0; at the end the counters equal the generator's own ledger."""
    tag, port = unique("metrics"), free_port()
    assert stack.pulse("setup", "--topic", tag, **_mine(tag)).returncode == 0
    agg = subprocess.Popen([sys.executable, "-m", "pulse", "aggregate", "--metrics-addr", f"127.0.0.1:{port}"],
                           env=stack.env | _mine(tag), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(120):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok\n"
        gen = subprocess.Popen([sys.executable, "-m", "pulse", "generate", "--count", "15000", "--rate", "3000",
                                "--seed", "11", "--no-progress", "--late-fraction", "0.03", "--too-late-fraction",
                                "0.01", "--invalid-fraction",
                                "0.03", "--duplicate-fraction", "0.03"], env=stack.env | _mine(tag),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lags = []
        while gen.poll() is None:
            sample = _scrape(port)
            end = _ends(stack, tag)
            lags.append(sample["pulse_consumer_lag_records"])
            assert sum(_outcomes(sample).values()) + sample["pulse_consumer_lag_records"] <= end
            time.sleep(0.3)
        ledger = gen.stdout.read() if gen.stdout else ""
        assert gen.returncode == 0, ledger
        assert max(lags) > 0, lags
        deadline, sample = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            sample = _scrape(port)
            if sum(_outcomes(sample).values()) == 15000 and sample["pulse_consumer_lag_records"] == 0:
                break
            time.sleep(0.5)
    finally:
        agg.send_signal(signal.SIGINT)
        agg.wait(60)
    got = _outcomes(sample)
    assert sum(got.values()) == 15000 and sample["pulse_consumer_lag_records"] == 0, sample
    assert sample["pulse_consumer_lag_seconds"] == 0
    row = lambda name: sum(int(n.replace(",", "")) for n in  # noqa: E731 - the ledger's rows, as printed
                           re.findall(rf"^\W*{name}\W+([\d,]+)", ledger, re.MULTILINE))
    invalid = sum(row(k) for k in ("undecodable", "malformed_json", "wrong_type", "missing_field", "negative_price",
                                   "far_future", "oversized"))
    assert got["dead_lettered"] == invalid > 0
    assert got["duplicates"] == row("duplicate") > 0
    assert got["accepted"] + got["corrected"] + got["late"] == row("valid") + row("late") + row("too_late")
    assert got["late"] == row("too_late") > 0 and got["corrected"] > 0
    assert sample['pulse_state_keys{kind="users"}'] > 0 and sample["pulse_flush_seconds_count"] > 0
    # every live user costs at least its slot and its interned id
    assert sample["pulse_state_bytes"] > 40 * sample['pulse_state_keys{kind="users"}']
    assert sum(v for k, v in sample.items() if k.startswith("pulse_documents_published_total")) > 0
