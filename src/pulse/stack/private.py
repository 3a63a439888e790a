"""A second, private Kafka + Elasticsearch (own home and ports, the shared artifact cache): for fault runs that
stop and restart services, so that they stop only what they started (`pulse chaos`, the restart tests)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pulse.config import Settings
from pulse.stack import manager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PrivateStack:
    env: dict[str, str]  # a process environment pointing every Pulse command at this stack
    settings: Settings

    def pulse(self, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a `pulse` command against this stack (``extra``: more environment, e.g. PULSE_TOPIC)."""
        return subprocess.run([sys.executable, "-m", "pulse", *args], env=self.env | extra, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)

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
                  secure: bool = False) -> Iterator[PrivateStack]:
    """Start a private stack under ``<home>/<name>`` on free ports (``secure``: TLS and authentication, see
    `pulse stack up --secure`); stop it and delete its data afterwards."""
    home = shared.home / name
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env |= {"PULSE_HOME": str(home), "PULSE_CACHE": str(shared.cache_dir), "PULSE_KAFKA_HEAP": kafka_heap,
            "PULSE_ES_HEAP": es_heap, "PULSE_KAFKA_PORT": str(free_port()),
            "PULSE_KAFKA_CONTROLLER_PORT": str(free_port()), "PULSE_ES_PORT": str(free_port()),
            "PULSE_ES_TRANSPORT_PORT": str(free_port())}
    stack = PrivateStack(env, Settings.from_env(env))
    try:
        manager.up(stack.settings, secure=secure)
        stack.env.update(manager.client_env(stack.settings))
        yield stack
    finally:
        manager.down(stack.settings)
        shutil.rmtree(home, ignore_errors=True)
