"""A second, private Kafka + Elasticsearch (own home and ports, the shared artifact cache) for tests that stop
and restart services: a test stops only what it started."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PrivateStack:
    env: dict[str, str]  # a process environment pointing every Pulse command at this stack
    settings: Settings

    def pulse(self, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pulse", *args], env=self.env | extra, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    @contextmanager
    def stopped(self, service: str) -> Iterator[None]:
        """One service stopped for the duration of the block, then started again (and healthy)."""
        from pulse.stack import manager

        assert manager.service_by_name(self.settings, service).process.stop(timeout=60)
        try:
            yield
        finally:
            manager.up(self.settings)

    def restart(self, service: str, down_s: float) -> None:
        """Stop one service for ``down_s`` seconds, then start it again and wait until it is healthy."""
        import time

        with self.stopped(service):
            time.sleep(down_s)


@contextmanager
def private_stack(shared: Settings, name: str) -> Iterator[PrivateStack]:
    home = shared.home / f"test-{name}"
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env |= {"PULSE_HOME": str(home), "PULSE_CACHE": str(shared.cache_dir), "PULSE_KAFKA_HEAP": "512m",
            "PULSE_ES_HEAP": "768m", "PULSE_KAFKA_PORT": str(free_port()),
            "PULSE_KAFKA_CONTROLLER_PORT": str(free_port()), "PULSE_ES_PORT": str(free_port()),
            "PULSE_ES_TRANSPORT_PORT": str(free_port())}
    stack = PrivateStack(env, Settings.from_env(env))
    try:
        up = stack.pulse("stack", "up", timeout=300)
        assert up.returncode == 0, up.stderr
        yield stack
    finally:
        stack.pulse("stack", "down", timeout=120)
        shutil.rmtree(home, ignore_errors=True)
