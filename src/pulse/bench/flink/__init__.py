"""Apache Flink as a `pulse bench aggregate` contender: ``PulseFlinkJob.java`` on a local MiniCluster.

Flink's jars come from Maven Central the way the stack's Kafka does (``pom.xml`` here, resolved once into Pulse's
cache); the job is compiled once per version of its source. Its arguments are Pulse's own settings (windows,
dimensions, grace, duplicate horizon, how far ahead an event may be), so both compute the same windows.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

from pulse.aggregate.config import StateConfig
from pulse.aggregate.model import DIMENSIONS
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.events.schema import MAX_FUTURE_MS
from pulse.stack.artifacts import maven_lib
from pulse.stack.service import java_home

JOB = "PulseFlinkJob"
CHECKPOINT_MS = 1000
"""Exactly-once output is committed on checkpoints: once a second, as often as Pulse commits a flush."""
JAVA_OPTIONS = ["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                # what Flink's own launch scripts open on Java 17 for its serializers
                "--add-opens=java.base/java.util=ALL-UNNAMED", "--add-opens=java.base/java.lang=ALL-UNNAMED"]


def _here() -> Path:
    return Path(str(resources.files("pulse.bench.flink")))


def versions() -> dict[str, str]:
    """The pinned versions (``flink.version``, ``flink.kafka.version``), read from the POM that resolves them."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(_here() / "pom.xml").getroot().find("m:properties", ns)
    assert props is not None
    return {el.tag.split("}", 1)[1]: (el.text or "") for el in props}


def label() -> str:
    v = versions()
    return f"Flink {v['flink.version']} (connector-kafka {v['flink.kafka.version']})"


def classpath(settings: Settings) -> str:
    """The job's classpath: Flink's jars (resolved once) and the compiled job (compiled once per source)."""
    name = f"flink-{versions()['flink.version']}"
    lib, _ = maven_lib(settings, _here() / "pom.xml", name, label())
    source = _here() / f"{JOB}.java"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    classes = settings.cache_dir / name / f"classes-{digest}"
    if not (classes / f"{JOB}.class").exists():
        javac = java_home() / "bin" / "javac"
        if not javac.exists() and shutil.which("javac") is None:
            raise PulseError("the Flink contender needs a JDK (javac); install openjdk-17-jdk-headless")
        tmp = classes.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run([str(javac) if javac.exists() else "javac", "-d", str(tmp), "-cp", f"{lib}/*",
                               str(source)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PulseError(f"compiling {source.name} failed: {proc.stderr.strip()[-500:]}")
        tmp.rename(classes)
    return f"{classes}:{lib}/*"


def argv(settings: Settings, cp: str, topic: str, group: str) -> list[str]:
    state = StateConfig()
    return [str(java_home() / "bin" / "java"), *JAVA_OPTIONS, "-cp", cp, JOB, settings.bootstrap, topic, group,
            output_topic(group), str(CHECKPOINT_MS), str(MAX_FUTURE_MS), str(state.grace_ms),
            ",".join(str(ms) for ms in state.window_sizes), ",".join(DIMENSIONS), str(state.correct_within_ms)]


def output_topic(group: str) -> str:
    """Where the job writes every document (the harness creates it: the broker does not auto-create topics)."""
    return f"{group}-out"
