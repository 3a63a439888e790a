"""The Kafka connection: librdkafka properties every client of a process shares (TLS, SASL, client id, …), read
once, from a properties file (``--kafka-config FILE`` / ``PULSE_KAFKA_CONFIG``: the ``client.properties``
convention of ``kcat -F`` and Kafka's own tools) and then from ``PULSE_KAFKA_<PROPERTY>`` variables
(``PULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` sets ``security.protocol``; ``…_FILE`` reads the value from a file,
for secrets). Every Kafka client is configured by :func:`client_config`; a client's own settings (group,
transactional id, isolation) come last and win.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pulse.connect.secrets import Secret, read_secret
from pulse.errors import PulseError

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


def client_config(bootstrap: str, settings: Mapping[str, object] | None = None) -> dict[str, object]:
    """A Kafka client's configuration: the connection properties, ``bootstrap``, then the client's own settings."""
    return {**connection_properties(), "bootstrap.servers": bootstrap, **(settings or {})}


def use_config_file(path: Path) -> None:
    """``--kafka-config``: for this process and the ones it starts (stages of `pulse run`, say)."""
    os.environ[f"{PREFIX}CONFIG"] = str(path.resolve())
    connection_properties.cache_clear()
