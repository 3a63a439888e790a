"""The Kafka connection: librdkafka properties every client of a process shares (TLS, SASL, client id, …), read
once, from a properties file (``--kafka-config FILE`` / ``PULSE_KAFKA_CONFIG``: the ``client.properties``
convention of ``kcat -F`` and Kafka's own tools) and then from ``PULSE_KAFKA_<PROPERTY>`` variables
(``PULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` sets ``security.protocol``; ``…_FILE`` reads the value from a file,
for secrets). Every Kafka client is configured by :func:`client_config`: the operator's properties win over a
client's tuning (timeouts, fetch and batch sizes), and the settings exactly-once and no loss rest on
(`PULSE_DECIDES`) are the client's own: an operator's different value is refused with one line, never ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pulse.connect.secrets import Secret, read_secret
from pulse.errors import PulseError

T = TypeVar("T")
PREFIX = "PULSE_KAFKA_"
OWN = {"PORT", "CONTROLLER_PORT", "HEAP", "VERSION", "TOOLS_VERSION", "CONFIG"}
"""``PULSE_KAFKA_*`` names that are Pulse's own settings (the local broker, the file), not client properties."""


def load_properties(path: Path) -> dict[str, str]:
    """A Java-style properties file: ``key=value`` or ``key: value`` lines, ``#`` and ``!`` comments."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PulseError(f"--kafka-config: cannot read {path}: {exc.strerror}") from None
    props = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if cut < 0:
            raise PulseError(f"--kafka-config {path}, line {n}: expected key=value")
        props[line[:cut].strip()] = line[cut + 1:].strip()
    return props


SECRET_WORDS = ("password", "secret", "jaas", "oauthbearer.config", "key.pem", "keystore.key")
"""Properties whose values are shown as ``***`` (librdkafka's secrets, and then some)."""


def is_secret(prop: str) -> bool:
    return any(word in prop for word in SECRET_WORDS)


def property_sources(env: Mapping[str, str]) -> dict[str, tuple[Secret, str]]:
    """Each connection property ``env`` gives, with where it came from: the file's, then the variables' (which
    win)."""
    found: dict[str, tuple[Secret, str]] = {}
    if env.get(f"{PREFIX}CONFIG"):
        path = Path(env[f"{PREFIX}CONFIG"])
        found = {k: (Secret(v), f"file {path}") for k, v in load_properties(path).items()}
    for name in sorted(env):
        if not name.startswith(PREFIX):
            continue
        rest = name[len(PREFIX):].removesuffix("_FILE")
        if rest in OWN:
            continue
        secret = read_secret(env, f"{PREFIX}{rest}")
        if secret is not None:
            source = f"env {name}={env[name]}" if name.endswith("_FILE") else f"env {name}"
            found[rest.lower().replace("_", ".")] = (secret, source)
    return found


def properties_from(env: Mapping[str, str]) -> dict[str, str]:
    """The connection properties ``env`` gives: the file's, then the variables' (which win)."""
    return {prop: value.reveal() for prop, (value, _) in property_sources(env).items()}


@lru_cache(maxsize=1)
def connection_properties() -> dict[str, str]:
    """This process's connection properties (read once)."""
    return properties_from(os.environ)


PULSE_DECIDES = frozenset({
    "group.id", "group.instance.id", "transactional.id", "enable.auto.commit", "enable.auto.offset.store",
    "isolation.level", "auto.offset.reset", "partition.assignment.strategy", "enable.partition.eof",
    "enable.idempotence", "acks", "message.timeout.ms", "delivery.report.only.error",
})
"""Client settings that exactly-once and no loss rest on: where a client sets one, its value applies."""

_SAME = {"-1": "all"}  # librdkafka's spellings of one value (acks)


KINDS = ("consumer", "producer", "admin")
"""A property prefixed ``<kind>.`` applies to that kind of client only; ``<client>.<kind>.`` to one client
(``aggregate.consumer.session.timeout.ms``), as Kafka Streams' ``consumer.`` and ``restore.consumer.`` do."""


def scope(prop: str) -> tuple[str, str | None]:
    """(the property, the client or kind it is for: None for every client)."""
    parts = prop.split(".", 2)
    if parts[0] in KINDS and len(parts) > 1:
        return prop[len(parts[0]) + 1:], parts[0]
    if len(parts) == 3 and parts[1] in KINDS:
        return parts[2], f"{parts[0]}.{parts[1]}"
    return prop, None


def for_client(properties: Mapping[str, T], client: str | None) -> dict[str, T]:
    """The properties (values, or anything kept per property) that apply to ``client`` (``<name>.<kind>``):
    unscoped ones, then its kind's, then its own, each level winning over the one before."""
    kind = client.rsplit(".", 1)[-1] if client else None
    levels: dict[str | None, dict[str, T]] = {None: {}, kind: {}, client: {}}
    for prop, value in properties.items():
        name, target = scope(prop)
        if target in levels:
            levels[target][name] = value
    return {**levels[None], **levels[kind], **levels[client]}


def client_config(bootstrap: str, settings: Mapping[str, object] | None = None,
                  properties: Mapping[str, str] | None = None, client: str | None = None) -> dict[str, object]:
    """A Kafka client's configuration: its tuning, then the connection properties that apply to ``client``
    (``properties``, this process's by default: the operator's, which win), ``bootstrap``, then the settings of
    `PULSE_DECIDES` it sets."""
    props = for_client(connection_properties() if properties is None else properties, client)
    own = dict(settings or {})
    for key in sorted(own.keys() & props.keys() & PULSE_DECIDES):
        theirs, ours = (_SAME.get(str(v).lower(), str(v).lower()) for v in (props[key], own[key]))
        if theirs != ours:
            raise PulseError(f"Kafka property {key}={props[key]} (PULSE_KAFKA_* or --kafka-config) cannot apply: "
                             f"Pulse sets {key}={own[key]} for this client, and exactly-once or no loss rests on it")
    tuning = {k: v for k, v in own.items() if k not in PULSE_DECIDES}
    decided = {k: v for k, v in own.items() if k in PULSE_DECIDES}
    return {**tuning, **props, "bootstrap.servers": bootstrap, **decided}


def use_config_file(path: Path) -> None:
    """``--kafka-config``: for this process and the ones it starts (stages of `pulse run`, say)."""
    os.environ[f"{PREFIX}CONFIG"] = str(path.resolve())
    connection_properties.cache_clear()
