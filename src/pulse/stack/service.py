"""What `pulse stack` needs from each local server: how to install, configure, launch and probe it."""

from __future__ import annotations

import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from pulse.config import Settings
from pulse.errors import StackError
from pulse.stack.process import ManagedProcess


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    user: str | None = None


class Service(ABC):
    """One local server (Kafka or Elasticsearch) under ``<home>/<name>/``."""

    name: str
    start_timeout: float = 120.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / self.name
        self.process = ManagedProcess(self.name, self.dir / f"{self.name}.pid", self.dir / "logs" /
                                      f"{self.name}.log", self.cmdline_marker)

    @property
    @abstractmethod
    def cmdline_marker(self) -> str:
        """A string in the command line that identifies our process (includes our data directory)."""

    @property
    @abstractmethod
    def ports(self) -> list[int]: ...

    @property
    @abstractmethod
    def address(self) -> str: ...

    @property
    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def install(self) -> bool:
        """Make the artifacts available; return True if anything was downloaded."""

    @abstractmethod
    def prepare(self) -> Launch:
        """Write configuration, initialise storage, and say how to launch."""

    @abstractmethod
    def healthy(self) -> bool: ...


def java_home() -> Path:
    """A Java 17+ home: $JAVA_HOME if set, else the one behind `java` on PATH."""
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    java = shutil.which("java")
    if java:
        candidates.append(Path(java).resolve().parent.parent)
    for home in candidates:
        binary = home / "bin" / "java"
        if binary.exists() and java_major(binary) >= 17:
            return home
    if candidates:
        raise StackError("Java 17 or newer is required (found an older one); install openjdk-17-jre-headless "
                         "or set JAVA_HOME")
    raise StackError("Java is not installed; install openjdk-17-jre-headless (apt-get install "
                     "openjdk-17-jre-headless) or set JAVA_HOME")


def java_major(binary: Path) -> int:
    out = subprocess.run([str(binary), "-version"], capture_output=True, text=True, check=False).stderr
    for token in out.split('"')[1:2]:
        head = token.split(".")[0]
        if head == "1":
            return int(token.split(".")[1])
        if head.isdigit():
            return int(head)
    return 0


def base_env() -> dict[str, str]:
    """A minimal environment for a server process, so a user's shell settings cannot leak into it."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}
