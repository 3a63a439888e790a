"""Resolve Kafka and Elasticsearch from Maven Central into Pulse's cache, once.

A finished resolution leaves a ``.complete`` marker; a later call finds it and downloads nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from importlib import resources
from pathlib import Path

from pulse.config import Settings
from pulse.errors import StackError

MARKER = ".complete"


def _require_maven() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("Maven ('mvn') is not installed; install it (apt-get install maven) to download Kafka "
                         "and Elasticsearch from Maven Central")
    return mvn


def _run_maven(args: list[str], what: str, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.run([_require_maven(), "-B", "-q", *args], stdout=out, stderr=subprocess.STDOUT,
                              check=False, timeout=1800)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if "ERROR" in ln]
        reason = lines[0].removeprefix("[ERROR]").strip() if lines else f"maven exited {proc.returncode}"
        raise StackError(f"failed to download {what} from Maven Central: {reason[:300]} (log: {log})")


def _pom(name: str) -> Path:
    return Path(str(resources.files("pulse.stack") / "maven" / name))


def kafka_lib(settings: Settings, version: str | None = None, *, tools: bool = False) -> tuple[Path, bool]:
    """Directory of jars for Kafka ``version`` (broker, or perf tools); returns (dir, downloaded_now)."""
    version = version or (settings.kafka_tools_version if tools else settings.kafka_version)
    kind = "kafka-tools" if tools else "kafka"
    pom = _pom("kafka-tools.pom.xml" if tools else "kafka.pom.xml")
    return maven_lib(settings, pom, f"{kind}-{version}", f"{kind} {version}", {"kafka.version": version})


def maven_lib(settings: Settings, pom: Path, name: str, what: str,
              properties: dict[str, str] | None = None) -> tuple[Path, bool]:
    """Directory of the runtime jars ``pom`` depends on (``what``, for messages), resolved once into the cache as
    ``<name>/lib``; returns (dir, downloaded_now)."""
    lib = settings.cache_dir / name / "lib"
    if (lib / MARKER).exists():
        return lib, False
    if lib.exists():
        shutil.rmtree(lib)
    _run_maven(
        ["-f", str(pom), f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
         *(f"-D{key}={value}" for key, value in (properties or {}).items()),
         "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={lib}"],
        what, settings.cache_dir / "logs" / f"maven-{name}.log",
    )
    (lib / MARKER).write_text(name)
    return lib, True


def elasticsearch_dist(settings: Settings) -> tuple[Path, bool]:
    """Unpacked Elasticsearch distribution (readable by the service user); returns (dir, downloaded_now)."""
    version = settings.es_version
    root = settings.cache_dir / f"elasticsearch-{version}"
    dist = root / f"elasticsearch-{version}"
    if (root / MARKER).exists():
        return dist, False
    if root.exists():
        shutil.rmtree(root)
    download = settings.cache_dir / "downloads"
    _run_maven(
        [f"-Dmaven.repo.local={settings.cache_dir / 'm2'}", "dependency:copy",
         f"-Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip",
         f"-DoutputDirectory={download}"],
        f"Elasticsearch {version}", settings.cache_dir / "logs" / f"maven-elasticsearch-{version}.log",
    )
    archive = download / f"elasticsearch-{version}.zip"
    root.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            zf.extract(info, root)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                (root / info.filename).chmod(mode | 0o444)  # keep exec bits, readable by the service user
    archive.unlink()
    (root / MARKER).write_text(version)
    return dist, True
