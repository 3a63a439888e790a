"""Static checks of docker-compose.yml and the Dockerfile (no Docker engine on these machines)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest
import yaml

from pulse.cli.main import cli
from pulse.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _known_env() -> set[str]:
    """Every environment variable Pulse reads: Settings fields, URL overrides and CLI options' envvars."""
    names = {f"PULSE_{f.name.upper()}" for f in fields(Settings)} | {"PULSE_BOOTSTRAP", "PULSE_ES_URL"}

    def walk(cmd: click.Command) -> None:
        for p in cmd.params:
            for env in [p.envvar] if isinstance(p.envvar, str) else (p.envvar or []):
                names.add(env)
        if isinstance(cmd, click.Group):  # the top-level group loads its verbs lazily
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name))  # type: ignore[arg-type]

    walk(cli)
    return names


def _pulse_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("build")}


def test_services_and_one_shot_setup(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "elasticsearch", "kibana", "setup", "generator", "aggregator", "dashboard"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["setup"]["restart"] == "no"
    for name in ("generator", "aggregator", "store", "archive", "dashboard"):
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    # scalable: the aggregator has no fixed name or host port
    assert "container_name" not in services["aggregator"] and "ports" not in services["aggregator"]


def test_every_healthy_dependency_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    checked = 0
    for svc in services.values():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
                checked += 1
    assert checked >= 4


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        assert re.search(r":v?\d+(\.\d+)+$", image), f"{name}: {image} is not pinned to a version"
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)  # type: ignore[union-attr]
    assert re.search(r":\d+\.\d+\.\d+", base), base


def test_environment_uses_pulse_config_names(compose: dict[str, Any]) -> None:
    known = _known_env()
    used = set()
    for svc in _pulse_services(compose).values():
        for key in svc.get("environment") or {}:
            if key.startswith("PULSE_"):
                used.add(key)
                assert key in known, f"{key} is not a setting Pulse reads"
    assert {"PULSE_BOOTSTRAP", "PULSE_ES_URL"} <= used


def test_ports_match_the_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = _pulse_services(compose)["aggregator"]["environment"]
    kafka_port = int(env["PULSE_BOOTSTRAP"].rsplit(":", 1)[1])
    assert f"kafka:{kafka_port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    es = urlparse(env["PULSE_ES_URL"])
    assert es.hostname == "elasticsearch" and f"{es.port}:{es.port}" in services["elasticsearch"]["ports"][0]
    dash = services["dashboard"]
    port = dash["environment"]["PULSE_DASHBOARD_PORT"]
    assert dash["ports"] == [f"127.0.0.1:{port}:{port}"] and port in " ".join(dash["healthcheck"]["test"])
    for svc in services.values():
        for mapping in svc.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{mapping} would listen on every interface"


def test_commands_are_pulse_commands(compose: dict[str, Any]) -> None:
    for name, svc in _pulse_services(compose).items():
        command = svc["command"]
        verbs = re.findall(r"pulse ([a-z]+)", command[-1]) if command[0] == "sh" else [command[0]]
        for verb in verbs:
            assert cli.get_command(click.Context(cli), verb) is not None, f"{name}: unknown pulse command {verb!r}"


def test_dockerfile_installs_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    build, runtime = text.split("\nFROM python:", 1)
    # the build stage compiles the native core into a wheel of the whole project
    assert "COPY pyproject.toml" in build and "COPY src" in build and "COPY native" in build
    assert re.search(r"pip wheel .*--wheel-dir /wheels \.$", build, re.M)
    assert re.search(r"^FROM rust:\d+\.\d+\.\d+-slim-bookworm AS build$", build, re.M)  # pinned toolchain
    assert "COPY --from=build /wheels /wheels" in runtime
    assert re.search(r"^RUN pip install /wheels/\*\.whl", runtime, re.M)
    assert 'ENTRYPOINT ["pulse"]' in text
    assert re.search(r"^USER (?!root)", text, re.M)  # not as root


def test_one_kafka_version_everywhere(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{Settings().kafka_version}"


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Container path → volume name, for named volumes."""
    return {target: source for source, target, *_ in (v.split(":") for v in svc.get("volumes", []))}


def test_data_volumes_are_where_the_images_write(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], set(compose["volumes"])
    kafka = services["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]  # unset, the apache/kafka image writes to /tmp
    assert _mounts(kafka).get(log_dirs) in volumes, (log_dirs, kafka["volumes"])
    # the Elasticsearch image's path.data
    assert _mounts(services["elasticsearch"]).get("/usr/share/elasticsearch/data") in volumes
    prometheus = services["prometheus"]
    storage = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--storage.tsdb.path="))
    assert _mounts(prometheus).get(storage) in volumes


def test_prometheus_scrapes_every_pulse_service(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    mounted = _mounts(compose["services"]["prometheus"])
    assert mounted["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    discovered = {(name, sd["port"]) for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", [])
                  for name in sd["names"]}
    for name, svc in _pulse_services(compose).items():
        addr = (svc.get("environment") or {}).get("PULSE_METRICS_ADDR")
        if name == "setup":
            continue
        assert addr, f"{name} serves no metrics"
        assert (name, int(addr.rsplit(":", 1)[1])) in discovered, f"Prometheus does not scrape {name}"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"]) or name == "dashboard"


@pytest.fixture(scope="module")
def secure() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.secure.yml").read_text())


def _granted(svc: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in svc.get("secrets", [])}


def test_the_secure_variant_takes_every_credential_from_secrets_pulse_makes(
        compose: dict[str, Any], secure: dict[str, Any], tmp_path: Path) -> None:
    from pulse.cli.stack_cmd import COMPOSE_HOSTS, COMPOSE_SECRETS
    from pulse.stack.secure import SecureMaterial

    SecureMaterial(tmp_path).create(hosts=COMPOSE_HOSTS, extra_secrets=COMPOSE_SECRETS, shared=True)
    declared = secure["secrets"]
    for name, spec in declared.items():  # `pulse stack secrets ./secrets` makes every file the variant mounts
        assert spec["file"].startswith("./secrets/"), name
        assert (tmp_path / spec["file"].removeprefix("./secrets/")).is_file(), name
    for name, svc in secure["services"].items():
        granted = _granted(svc)
        assert granted <= set(declared), name
        text = yaml.safe_dump(svc)
        for used in re.findall(r"/run/secrets/(\w+)", text) + re.findall(r"\$\{secrets:/run/secrets:(\w+)\}", text):
            assert used in granted, f"{name} reads secret {used} it is not given"
        for key, raw in (svc.get("environment") or {}).items():
            value = str(raw).replace("$$", "$")  # Compose's escape for a literal $
            # a credential is never a value in the file: only a *_FILE path or a config-provider reference
            if re.search(r"(PASSWORD|API_KEY)$", key):
                assert str(value).startswith("${secrets:"), f"{name}: {key} holds a credential"
            for quoted in re.findall(r'(?:password|user_\w+)="([^"]*)"', str(value)):  # JAAS logins
                assert quoted.startswith("${secrets:"), f"{name}: {key} holds a credential"
    for name in _pulse_services(compose):
        env = secure["services"][name]["environment"]
        assert env["PULSE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["PULSE_ES_URL"].startswith("https://")
        assert {"PULSE_KAFKA_SASL_PASSWORD_FILE", "PULSE_ES_PASSWORD_FILE"} <= set(env), name


def test_the_secure_kafka_listener_is_sasl_ssl_under_a_name_the_image_leaves_alone(secure: dict[str, Any]) -> None:
    env = secure["services"]["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split("://")[0]
    assert protocols[advertised] == "SASL_SSL" and "SSL" not in advertised and "SASL" not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == advertised
    assert f"KAFKA_LISTENER_NAME_{advertised}_PLAIN_SASL_JAAS_CONFIG" in env
