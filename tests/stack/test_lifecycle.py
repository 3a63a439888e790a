"""`pulse stack up | down | status` on a second, private stack (own home and ports), and its error messages.

The artifact cache is shared with the main stack, so this also proves that a second `up` downloads nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulse.config import Settings
from tests.cli_helpers import one_line_error

PORTS = {"PULSE_KAFKA_PORT": "19092", "PULSE_KAFKA_CONTROLLER_PORT": "19093", "PULSE_ES_PORT": "19200",
         "PULSE_ES_TRANSPORT_PORT": "19300", "PULSE_ES_HEAP": "512m", "PULSE_KAFKA_HEAP": "512m"}


def pulse(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pulse", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def private_env(settings: Settings) -> Iterator[dict[str, str]]:
    home = settings.home / "test-lifecycle"
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env |= PORTS | {"PULSE_HOME": str(home), "PULSE_CACHE": str(settings.cache_dir)}
    yield env
    pulse(env, "stack", "down")
    shutil.rmtree(home, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_up_is_idempotent_and_restarts_from_cache(private_env: dict[str, str]) -> None:
    first = pulse(private_env, "stack", "up")
    assert first.returncode == 0, first.stderr
    assert "127.0.0.1:19092" in first.stdout and "http://127.0.0.1:19200" in first.stdout

    again = pulse(private_env, "stack", "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 2

    status = pulse(private_env, "stack", "status")
    assert status.returncode == 0 and status.stdout.count("running") >= 2

    pids = [int(p.read_text()) for p in Path(private_env["PULSE_HOME"]).glob("*/*.pid")]
    assert len(pids) == 2
    down = pulse(private_env, "stack", "down")
    assert down.returncode == 0 and down.stdout.count("stopped") == 2
    assert not any(_alive(pid) for pid in pids)
    assert pulse(private_env, "stack", "status", "--quiet").returncode == 1

    cache_before = sorted(p.name for p in Path(private_env["PULSE_CACHE"]).rglob("*"))
    restart = pulse(private_env, "stack", "up")
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.count("from cache") == 2 and "downloaded" not in restart.stdout
    assert sorted(p.name for p in Path(private_env["PULSE_CACHE"]).rglob("*")) == cache_before


def test_port_taken_givesone_line_error(private_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", int(PORTS["PULSE_KAFKA_PORT"])))
        squatter.listen()
        proc = pulse(private_env, "stack", "up", timeout=60)
    line = one_line_error(proc)
    assert "port 19092" in line and "already in use" in line


def test_missing_java_givesone_line_error(private_env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mvn", "useradd", "chown", "tail"):  # everything but java
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = private_env | {"PATH": str(bin_dir)}
    env.pop("JAVA_HOME", None)
    line = one_line_error(pulse(env, "stack", "up", timeout=60))
    assert "Java is not installed" in line


def test_missing_maven_givesone_line_error(private_env: dict[str, str], tmp_path: Path) -> None:
    env = private_env | {"PATH": "/nonexistent", "PULSE_CACHE": str(tmp_path / "empty-cache")}
    line = one_line_error(pulse(env, "stack", "up", timeout=60))
    assert "Maven ('mvn') is not installed" in line


def test_failed_download_givesone_line_error(private_env: dict[str, str], tmp_path: Path) -> None:
    env = private_env | {"PULSE_CACHE": str(tmp_path / "cache"), "PULSE_KAFKA_VERSION": "0.0.404"}
    line = one_line_error(pulse(env, "stack", "up", timeout=240))
    assert "failed to download kafka 0.0.404 from Maven Central" in line


def test_service_dying_on_start_shows_its_log(private_env: dict[str, str]) -> None:
    env = private_env | {"PULSE_KAFKA_HEAP": "lots"}  # the JVM refuses -Xmxlots and exits at once
    proc = pulse(env, "stack", "up", timeout=120)
    line = one_line_error(proc)
    assert "kafka exited during start-up" in line
    assert "Invalid" in proc.stderr or "heap" in proc.stderr.lower()  # the log tail names the cause
