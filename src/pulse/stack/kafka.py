"""Apache Kafka as combined KRaft broker+controller nodes (one, or a cluster of several on loopback ports), run
straight from Maven Central jars."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pulse.config import Settings
from pulse.errors import StackError
from pulse.kafkaio import broker_reachable
from pulse.stack import artifacts
from pulse.stack.secure import BROKER_USER, SCRAM, SecureMaterial
from pulse.stack.service import Launch, Service, base_env, java_home
from pulse.topics import min_insync_for, replicas_for


def new_cluster_id() -> str:
    """A random KRaft cluster id: a URL-safe base64 UUID that never starts with '-'.

    One id in 64 would otherwise start with '-', and kafka-storage's argument
    parser takes that for an option (Kafka's own generator skips such ids too).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class Cluster:
    """The local Kafka cluster a home was made with: a home stays the size it was made (a KRaft quorum's voters
    are fixed when its storage is formatted)."""

    brokers: int
    cluster_id: str

    @property
    def replicas(self) -> int:
        """Replication of Kafka's internal topics, as Pulse replicates its own."""
        return replicas_for(self.brokers)

    @property
    def min_insync(self) -> int:
        return min_insync_for(self.replicas)

    @classmethod
    def recorded(cls, settings: Settings) -> Cluster | None:
        """The cluster this home was made with; a home made before clusters existed holds one broker."""
        try:
            data = json.loads(settings.local_cluster_file.read_text())
            return cls(int(data["brokers"]), str(data["cluster_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            formatted = (settings.home / "kafka" / "data" / "meta.properties").exists()
            return cls(1, "") if formatted else None

    def record(self, settings: Settings) -> None:
        settings.local_cluster_file.parent.mkdir(parents=True, exist_ok=True)
        settings.local_cluster_file.write_text(json.dumps({"brokers": self.brokers, "cluster_id": self.cluster_id}))


def node_name(node: int) -> str:
    """``kafka`` for the first node (a single broker's name), ``kafka-2``… for the others."""
    return "kafka" if node == 1 else f"kafka-{node}"


class KafkaService(Service):
    start_timeout = 90.0

    def __init__(self, settings: Settings, node: int = 1, cluster: Cluster | None = None) -> None:
        self.name = node_name(node)
        self.node = node
        self.cluster = cluster or Cluster.recorded(settings) or Cluster(1, "")
        super().__init__(settings)

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def cmdline_marker(self) -> str:
        return str(self.config_file)

    @property
    def ports(self) -> list[int]:
        return [self.settings.kafka_node_port(self.node), self.settings.kafka_node_controller_port(self.node)]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_node_port(self.node)}"

    @property
    def secure(self) -> SecureMaterial | None:
        material = SecureMaterial.of(self.settings.home)
        return material if material.exists() else None

    @property
    def version(self) -> str:
        return self.settings.kafka_version

    def install(self) -> bool:
        return artifacts.kafka_lib(self.settings)[1]

    def _server_properties(self) -> str:
        s, cluster = self.settings, self.cluster
        client = "SASL_SSL" if self.secure else "PLAINTEXT"
        port, controller = s.kafka_node_port(self.node), s.kafka_node_controller_port(self.node)
        voters = ",".join(f"{n}@127.0.0.1:{s.kafka_node_controller_port(n)}" for n in range(1, cluster.brokers + 1))
        replicas, min_isr = cluster.replicas, cluster.min_insync
        return "\n".join([
            "# Written by `pulse stack up`; edit Pulse settings (PULSE_*), not this file.",
            "process.roles=broker,controller",
            f"node.id={self.node}",
            f"controller.quorum.voters={voters}",
            f"listeners={client}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners={client}://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client}",
            f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client}:{client}",
            *self._security_properties(),
            f"log.dirs={self.dir / 'data'}",
            f"num.partitions={s.partitions}",
            "auto.create.topics.enable=false",
            # Internal topics are replicated as far as the cluster allows (one broker: one replica, else
            # transactions could not work), and so is every topic created without its own replication.
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            "transaction.state.log.num.partitions=10",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            # A restarted broker serves requests before the controller unfences it, and until then its metadata
            # lists no broker: librdkafka (2.10+) then drops every broker it knew and never reconnects
            # (confluentinc/librdkafka#5301). Heartbeats every 100 ms keep that window short.
            "broker.heartbeat.interval.ms=100",
            "log.retention.hours=168",
            "",
        ])

    def _security_properties(self) -> list[str]:
        """The SASL_SSL listener's settings: SCRAM-SHA-512 only, the broker's own login, its keystore."""
        if not (material := self.secure):
            return []
        login = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{BROKER_USER}" '
                 f'password="{material.secret("broker")}";')
        return [
            f"sasl.enabled.mechanisms={SCRAM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM}",
            f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config={login}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={material.keystore}",
            f"ssl.keystore.password={material.secret('keystore')}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={material.ca_cert}",
        ]

    def prepare(self) -> Launch:
        lib, _ = artifacts.kafka_lib(self.settings)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.touch()
        self.config_file.chmod(0o600)  # it holds the secure broker's keystore password
        self.config_file.write_text(self._server_properties())
        java = str(java_home() / "bin" / "java")
        classpath = f"{lib}/*"
        if not (self.dir / "data" / "meta.properties").exists():
            self._format(java, classpath, self.cluster.cluster_id or new_cluster_id())
        log4j = Path(str(resources.files("pulse.stack") / "conf" / "kafka-log4j2.properties"))
        heap = self.settings.kafka_heap
        argv = [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.dir / 'logs'}",
                "-cp", classpath, "kafka.Kafka", str(self.config_file)]
        return Launch(argv=argv, env=base_env(), cwd=self.dir)

    def _format(self, java: str, classpath: str, cluster_id: str) -> None:
        """Format the storage once (every node of a cluster with the cluster's id); a secure stack's SCRAM users
        go in here, through a Java argfile so that their passwords are never on a command line."""
        args = ["-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                "-c", str(self.config_file), "--ignore-formatted",
                *(self.secure.scram_arguments() if self.secure else [])]
        argfile = self.dir / "format.args"
        argfile.touch()
        argfile.chmod(0o600)
        argfile.write_text("\n".join(f'"{a}"' if " " in a else a for a in args) + "\n")
        try:
            proc = subprocess.run([java, f"@{argfile}"], capture_output=True, text=True, check=False, timeout=120)
        finally:
            argfile.unlink()
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StackError(f"formatting Kafka storage failed: {tail[0]}")

    def healthy(self) -> bool:
        secure = self.secure
        return broker_reachable(self.address, timeout=3.0,
                                connection=secure.kafka_client_properties() if secure else {})



