"""A second, private Kafka + Elasticsearch (own home and ports, the shared artifact cache): for fault runs that
stop and restart services, so that they stop only what they started (`pulse chaos`, the restart tests)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pulse.config import Settings
from pulse.errors import StackError
from pulse.stack import manager
from pulse.stack.secure import SecureMaterial

PRIVATE_PORTS = range(20_000, 32_000)
"""Where private services' ports are drawn: below Linux's ephemeral range (32768-60999), where every outgoing
connection takes its local port, so a port found free there could be taken before a slow server binds it."""


def free_port() -> int:
    """A port on 127.0.0.1 nothing holds now, for a server to listen on."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (a cluster's nodes take consecutive ports)."""
    draw = random.SystemRandom().randrange
    for _ in range(200):
        first = draw(PRIVATE_PORTS.start, PRIVATE_PORTS.stop - count)
        if all(_bindable(first + i) for i in range(count)):
            return first
    raise StackError(f"no {count} consecutive free ports on 127.0.0.1 in {PRIVATE_PORTS.start}-{PRIVATE_PORTS.stop}")


def _bindable(port: int) -> bool:
    """Nothing listens on the port, nor uses it as a connection's local end (which a listener cannot share)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class PrivateStack:
    env: dict[str, str]  # a process environment pointing every Pulse command at this stack
    settings: Settings

    def pulse(self, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a `pulse` command against this stack (``extra``: more environment, e.g. PULSE_TOPIC)."""
        return subprocess.run([sys.executable, "-m", "pulse", *args], env=self.env | extra, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    @property
    def kafka_client(self) -> dict[str, str]:
        """A plain confluent-kafka client's settings for this stack's Kafka (a secure one's credentials too)."""
        material = SecureMaterial.of(self.settings.home)
        return {"bootstrap.servers": self.env["PULSE_BOOTSTRAP"],
                **(material.kafka_client_properties() if material.exists() else {})}

    def kill(self, service: str) -> None:
        """SIGKILL one service (``kafka-2``: the second broker); :meth:`start` brings it back."""
        assert manager.service_by_name(self.settings, service).process.kill(), f"{service} was not running"

    def start(self) -> None:
        """Start whatever of this stack is not running, and wait until all of it is healthy."""
        manager.up(self.settings)

    @contextmanager
    def stopped(self, service: str) -> Iterator[None]:
        """One service stopped for the duration of the block, then started again (and healthy)."""
        assert manager.service_by_name(self.settings, service).process.stop(timeout=60)
        try:
            yield
        finally:
            manager.up(self.settings)


@contextmanager
def private_stack(shared: Settings, name: str, kafka_heap: str = "512m", es_heap: str = "768m",
                  secure: bool = False, brokers: int = 1) -> Iterator[PrivateStack]:
    """Start a private stack under ``<home>/<name>`` on free ports (``secure``: TLS and authentication, see
    `pulse stack up --secure`; ``brokers``: a Kafka cluster of that many nodes); stop it and delete its data
    afterwards."""
    home = shared.home / name
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    kafka = free_ports(2 * brokers)  # node n: a client port, then its controller's
    env |= {"PULSE_HOME": str(home), "PULSE_CACHE": str(shared.cache_dir), "PULSE_KAFKA_HEAP": kafka_heap,
            "PULSE_ES_HEAP": es_heap, "PULSE_KAFKA_PORT": str(kafka),
            "PULSE_KAFKA_CONTROLLER_PORT": str(kafka + 1), "PULSE_ES_PORT": str(free_port()),
            "PULSE_ES_TRANSPORT_PORT": str(free_port())}
    stack = PrivateStack(env, Settings.from_env(env))
    try:
        manager.up(stack.settings, secure=secure, brokers=brokers)
        stack.env.update(manager.client_env(stack.settings))
        yield stack
    finally:
        manager.down(stack.settings)
        shutil.rmtree(home, ignore_errors=True)
