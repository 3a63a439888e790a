"""Pulse configuration: one typed place for every knob, read from ``PULSE_*`` environment variables.

Command-line flags override these values; the defaults work out of the box on one machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path

from pulse.connect.elasticsearch import EsConnection
from pulse.errors import PulseError


def _default_home() -> Path:
    """``.pulse/`` at the repository root when run from a checkout, else in the current directory."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "pulse").exists():
            return parent / ".pulse"
    return Path.cwd() / ".pulse"


@dataclass(frozen=True)
class Settings:
    """Everything Pulse's services and commands need to find each other."""

    home: Path = field(default_factory=_default_home)
    cache: Path | None = None  # artifact cache; defaults to <home>/cache
    kafka_version: str = "4.4.0"
    kafka_tools_version: str = "4.3.1"  # kafka-tools 4.4.0 is not on Maven Central; perf tool only
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "1g"
    es_version: str = "8.19.21"
    es_port: int = 9200
    es_transport_port: int = 9300
    es_heap: str = "2g"
    es_user: str = "pulse-es"
    topic: str = "pulse.events"
    partitions: int = 6

    @property
    def cache_dir(self) -> Path:
        return self.cache or self.home / "cache"

    @property
    def bootstrap(self) -> str:
        """``PULSE_BOOTSTRAP``, else the Kafka connection's ``bootstrap.servers``, else the local broker."""
        from pulse.connect.kafka import connection_properties

        return (os.environ.get("PULSE_BOOTSTRAP") or connection_properties().get("bootstrap.servers")
                or ",".join(f"127.0.0.1:{self.kafka_node_port(node)}" for node in range(1, self.local_brokers + 1)))

    @property
    def local_cluster_file(self) -> Path:
        """Where `pulse stack up` records the local Kafka cluster it made (its size and id)."""
        return self.home / "kafka" / "cluster.json"

    @property
    def local_brokers(self) -> int:
        """How many brokers this home's local Kafka cluster has (one unless made with ``--brokers``)."""
        try:
            return int(json.loads(self.local_cluster_file.read_text())["brokers"])
        except (OSError, ValueError, KeyError, TypeError):
            return 1

    def kafka_node_port(self, node: int) -> int:
        """Client port of local broker ``node`` (1-based): ``kafka_port`` + 2 per node before it, so that with
        the default ports a cluster's brokers and controllers interleave (9092/9093, 9094/9095, …)."""
        return self.kafka_port + 2 * (node - 1)

    def kafka_node_controller_port(self, node: int) -> int:
        return self.kafka_controller_port + 2 * (node - 1)

    @property
    def es_url(self) -> str:
        """The node's URL, without credentials (the local stack and benchmarks); clients connect through
        :attr:`es`."""
        return self.es.hosts[0] if self.es.hosts else f"http://127.0.0.1:{self.es_port}"

    @cached_property
    def es(self) -> EsConnection:
        """How every client of this process reaches Elasticsearch (URLs, credentials, TLS)."""
        return EsConnection.from_env(os.environ, f"http://127.0.0.1:{self.es_port}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``PULSE_<FIELD>`` variables, then apply non-None overrides (flags)."""
        env = dict(os.environ) if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"PULSE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("home", "cache"):
            if key in values and values[key] is not None:
                values[key] = Path(str(values[key])).expanduser().resolve()
        return replace(cls(), **values)


_INT_FIELDS = {"kafka_port", "kafka_controller_port", "es_port", "es_transport_port", "partitions"}


def _coerce(name: str, raw: str) -> object:
    if name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise PulseError(f"PULSE_{name.upper()} must be an integer, got {raw!r}") from None
    return raw
