"""`pulse config`: effective settings with their sources, and never a secret."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli_helpers import run_pulse


def test_settings_show_where_they_came_from_and_secrets_never(tmp_path: Path) -> None:
    secrets = ("kafka-Pw-0001", "es-Pw-0002", "jaas-Pw-0003", "file-Pw-0004")
    props = tmp_path / "client.properties"
    props.write_text("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                     f"sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
                     f'username="u" password="{secrets[2]}";\n')
    secret_file = tmp_path / "es-password"
    secret_file.write_text(secrets[3] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")} | {
        "PULSE_KAFKA_CONFIG": str(props), "PULSE_KAFKA_SASL_USERNAME": "pulse",
        "PULSE_KAFKA_SASL_PASSWORD": secrets[0], "PULSE_ES_URL": f"https://ops:{secrets[1]}@es.example:9200",
        "PULSE_GRACE": "10s", "COLUMNS": "200"}
    done = run_pulse("config", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    for secret in secrets[:3]:
        assert secret not in out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
    assert f"file {props}" in lines["security.protocol"]
    assert "env PULSE_KAFKA_SASL_PASSWORD" in lines["sasl.password"] and "***" in lines["sasl.password"]
    assert "***" in lines["sasl.jaas.config"]
    assert "https://es.example:9200" in lines["hosts"] and "ops" in lines["username"]
    assert "written into the URL" in lines["password"]
    assert "10s" in lines["PULSE_GRACE"] and "aggregate" in lines["PULSE_GRACE"]
    everything = run_pulse("config", "--all", env=env | {"PULSE_ES_URL": "https://es.example:9200",
                                                         "PULSE_ES_PASSWORD_FILE": str(secret_file),
                                                         "PULSE_ES_USERNAME": "ops"})
    assert everything.returncode == 0, everything.stderr
    assert secrets[3] not in everything.stdout and "PULSE_FLUSH_INTERVAL" in everything.stdout
    assert f"PULSE_ES_PASSWORD_FILE={secret_file}" in everything.stdout
