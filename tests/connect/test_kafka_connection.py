"""Every Kafka client of a process takes the same connection properties, from a client.properties file
(`--kafka-config`) or PULSE_KAFKA_<PROPERTY> variables, secrets also from files: shown here on the real broker (a
file that names the broker is enough to reach it; a security protocol the broker does not speak is one line)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pulse.connect.kafka import properties_from
from pulse.errors import PulseError
from tests.cli_helpers import one_line_error, run_pulse
from tests.names import unique


def test_the_file_then_the_variables_give_the_properties(tmp_path: Path) -> None:
    conf = tmp_path / "client.properties"
    conf.write_text("# kcat -F style\nbootstrap.servers=broker:9093\nsecurity.protocol = SASL_SSL\n"
                    "sasl.mechanisms: SCRAM-SHA-512\n\n! another comment\n")
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t\n")
    env = {"PULSE_KAFKA_CONFIG": str(conf), "PULSE_KAFKA_SASL_USERNAME": "pulse",
           "PULSE_KAFKA_SASL_PASSWORD_FILE": str(secret), "PULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "PULSE_KAFKA_PORT": "9092", "PULSE_KAFKA_HEAP": "1g"}  # the local broker's settings, not properties
    assert properties_from(env) == {"bootstrap.servers": "broker:9093", "security.protocol": "SASL_PLAINTEXT",
                                    "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "pulse",
                                    "sasl.password": "s3cr3t"}
    conf.write_text("no separator here\n")
    with pytest.raises(PulseError, match="line 1: expected key=value"):
        properties_from(env)


def _dead_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_a_config_file_reaches_every_client(bootstrap: str, tmp_path: Path) -> None:
    conf = tmp_path / "client.properties"
    conf.write_text(f"bootstrap.servers={bootstrap}\nclient.id=pulse-from-file\n")
    env = {k: v for k, v in os.environ.items() if k != "PULSE_BOOTSTRAP"} | {"PULSE_KAFKA_PORT": _dead_port()}
    topic = unique("conf")
    done = run_pulse("--kafka-config", str(conf), "setup", "--topic", topic, "--partitions", "1", env=env)
    assert done.returncode == 0, done.stderr
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert topic in admin.list_topics(timeout=10).topics
    for future in admin.delete_topics([topic, f"{topic}.dlq", f"{topic}.late"], operation_timeout=30).values():
        future.result(timeout=60)


def test_a_protocol_the_broker_does_not_speak_is_one_line(bootstrap: str) -> None:
    env = dict(os.environ) | {"PULSE_BOOTSTRAP": bootstrap, "PULSE_KAFKA_SECURITY_PROTOCOL": "SSL"}
    done = run_pulse("setup", "--topic", unique("ssl"), env=env, timeout=120)
    assert "Kafka is not reachable" in one_line_error(done)


def test_the_operators_properties_win_over_a_clients_tuning_and_safety_settings_are_refused() -> None:
    from pulse.connect.kafka import client_config

    props = {"session.timeout.ms": "30000", "fetch.wait.max.ms": "10", "security.protocol": "SASL_SSL"}
    own = {"group.id": "g", "session.timeout.ms": 6_000, "heartbeat.interval.ms": 1_500,
           "isolation.level": "read_committed", "acks": "all"}
    conf = client_config("b:9092", own, props)
    assert conf["session.timeout.ms"] == "30000" and conf["fetch.wait.max.ms"] == "10"
    assert conf["heartbeat.interval.ms"] == 1_500 and conf["group.id"] == "g"
    assert conf["bootstrap.servers"] == "b:9092" and conf["security.protocol"] == "SASL_SSL"
    # the same value in another spelling is no conflict
    assert client_config("b:9092", own, props | {"isolation.level": "READ_COMMITTED", "acks": "-1"})["acks"] == "all"
    with pytest.raises(PulseError, match=r"isolation.level=read_uncommitted .* cannot apply") as err:
        client_config("b:9092", own, props | {"isolation.level": "read_uncommitted"})
    assert "\n" not in str(err.value)
    # a safety setting this client leaves alone is the operator's to set
    assert client_config("b:9092", {"linger.ms": 5}, {"acks": "1"})["acks"] == "1"


def test_a_refused_property_stops_a_command_with_one_line(bootstrap: str) -> None:
    env = dict(os.environ) | {"PULSE_BOOTSTRAP": bootstrap, "PULSE_KAFKA_ENABLE_AUTO_COMMIT": "true"}
    done = run_pulse("aggregate", "--topic", unique("auto"), "--exit-when-idle", "1", env=env, timeout=120)
    assert "enable.auto.commit=true" in one_line_error(done)


def test_a_property_scoped_to_a_kind_or_a_client_reaches_only_those() -> None:
    from pulse.connect.kafka import client_config

    props = {"session.timeout.ms": "30000", "consumer.fetch.wait.max.ms": "10",
             "aggregate.consumer.session.timeout.ms": "45000", "producer.linger.ms": "7"}
    own = {"group.id": "g", "session.timeout.ms": 6_000, "linger.ms": 5}
    mine = client_config("b:9092", own, props, client="aggregate.consumer")
    assert (mine["session.timeout.ms"], mine["fetch.wait.max.ms"], mine["linger.ms"]) == ("45000", "10", 5)
    other = client_config("b:9092", own, props, client="store.consumer")
    assert (other["session.timeout.ms"], other["fetch.wait.max.ms"]) == ("30000", "10")
    producer = client_config("b:9092", own, props, client="aggregate.producer")
    assert producer["linger.ms"] == "7" and "fetch.wait.max.ms" not in producer
    assert not any(k.startswith(("consumer.", "producer.", "aggregate.")) for k in mine)
    with pytest.raises(PulseError, match=r"isolation\.level=read_uncommitted"):  # scoped or not, still refused
        client_config("b:9092", {"isolation.level": "read_committed"},
                      {"aggregate.consumer.isolation.level": "read_uncommitted"}, client="aggregate.consumer")


def test_pulse_config_shows_what_each_client_runs_with() -> None:
    env = dict(os.environ) | {"PULSE_KAFKA_AGGREGATE_CONSUMER_SESSION_TIMEOUT_MS": "45000",
                              "PULSE_KAFKA_SASL_PASSWORD": "hunter2-secret"}
    done = run_pulse("config", "--clients", env=env)
    assert done.returncode == 0, done.stderr
    tables = done.stdout.split("Kafka client ")[1:]
    by_client = {t.split()[0]: t for t in tables}
    assert {"aggregate.consumer", "aggregate.producer", "store.consumer", "collect.producer"} <= by_client.keys()

    def row(client: str, prop: str) -> list[str]:
        line = next(ln for ln in by_client[client].splitlines() if f"│ {prop} " in ln)
        return [cell.strip() for cell in line.split("│")[1:-1]]

    assert row("aggregate.consumer", "session.timeout.ms")[1:] == [
        "45000", "env PULSE_KAFKA_AGGREGATE_CONSUMER_SESSION_TIMEOUT_MS"]
    assert row("store.consumer", "session.timeout.ms")[1:] == ["6000", "Pulse"]
    assert row("aggregate.consumer", "isolation.level")[1] == "read_committed"
    assert "hunter2" not in done.stdout and row("store.consumer", "sasl.password")[1] == "***"
