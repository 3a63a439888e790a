"""`pulse stack up | down | status | logs`: the local Kafka (one broker or a cluster) and Elasticsearch, started
idempotently."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pulse.config import Settings
from pulse.errors import StackError
from pulse.stack.elasticsearch import ElasticsearchService
from pulse.stack.kafka import Cluster, KafkaService, new_cluster_id
from pulse.stack.process import port_in_use, wait_until
from pulse.stack.secure import SecureMaterial
from pulse.stack.service import Service


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    version: str
    address: str
    pid: int | None
    healthy: bool

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "running" if self.healthy else "starting/unhealthy"


@dataclass(frozen=True)
class UpResult:
    name: str
    address: str
    started: bool
    downloaded: bool
    seconds: float


def brokers(settings: Settings) -> list[KafkaService]:
    """This home's Kafka nodes, first to last."""
    cluster = Cluster.recorded(settings) or Cluster(1, "")
    return [KafkaService(settings, node, cluster) for node in range(1, cluster.brokers + 1)]


def services(settings: Settings) -> list[Service]:
    return [*brokers(settings), ElasticsearchService(settings)]


def service_by_name(settings: Settings, name: str) -> Service:
    """A service by its name (``kafka``, ``kafka-2``…, ``elasticsearch``), or by a prefix naming only one."""
    every = services(settings)
    for svc in every:
        if svc.name == name:
            return svc
    matches = [svc for svc in every if svc.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    raise StackError(f"unknown service {name!r}; choose one of: {', '.join(svc.name for svc in every)}")


def up(settings: Settings, progress: Callable[[str], None] = lambda _msg: None, secure: bool = False,
       brokers: int | None = None) -> list[UpResult]:
    """Install (cached), configure and start every service not already running; wait until all are healthy.
    ``secure``: make this home's stack a secure one (TLS and authentication); ``brokers``: make its Kafka a
    cluster of that many nodes. A home stays what it was made."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(settings.home.stat().st_mode | 0o755)
    _make_cluster(settings, brokers)
    if secure:
        _make_secure(settings, progress)
    launched: list[tuple[Service, float, bool, subprocess.Popen[bytes] | None]] = []
    try:
        for svc in services(settings):  # every node starts before any is awaited: a quorum needs a majority
            launched.append(_launch(svc, progress))
        return _wait_healthy(launched)
    except BaseException:
        for svc, _, _, proc in launched:  # a failed `up` leaves nothing of its own running
            if proc is not None:
                svc.process.stop(timeout=20)
        raise


def _make_cluster(settings: Settings, brokers: int | None) -> None:
    recorded = Cluster.recorded(settings)
    if recorded is None:
        Cluster(brokers or 1, new_cluster_id()).record(settings)
    elif brokers is not None and brokers != recorded.brokers:
        raise StackError(f"the stack under {settings.home} was made with {recorded.brokers} broker(s), not "
                         f"{brokers}; stop it and use another --home, or `pulse stack down` and delete "
                         f"{settings.home / 'kafka'}* to start afresh")
    elif recorded.cluster_id == "":  # a home made before clusters were recorded
        recorded.record(settings)


def _make_secure(settings: Settings, progress: Callable[[str], None]) -> None:
    material = SecureMaterial.of(settings.home)
    if material.exists():
        return
    kafka = KafkaService(settings)
    if (kafka.dir / "data" / "meta.properties").exists():
        raise StackError(f"the stack under {settings.home} was made without --secure and its broker has no "
                         f"users; stop it and use another --home, or delete {kafka.dir} to start afresh")
    progress("making the secure stack's certificates and passwords")
    material.create()


def client_env(settings: Settings) -> dict[str, str]:
    """``PULSE_*`` variables that point every Pulse command at this home's stack (secrets as ``*_FILE``)."""
    bootstrap = ",".join(node.address for node in brokers(settings))
    es = ElasticsearchService(settings)
    material = SecureMaterial.of(settings.home)
    if material.exists():
        return material.client_env(bootstrap, es.address)
    return {"PULSE_BOOTSTRAP": bootstrap, "PULSE_ES_URL": es.address}


def _launch(svc: Service, progress: Callable[[str], None]) -> tuple[Service, float, bool,
                                                                      subprocess.Popen[bytes] | None]:
    t0 = time.monotonic()
    if svc.process.pid() is not None:
        progress(f"{svc.name} already running (pid {svc.process.pid()})")
        return svc, t0, False, None
    for port in svc.ports:
        if port_in_use(port):
            raise StackError(f"port {port} on 127.0.0.1 is already in use by another process, so "
                             f"{svc.name} cannot start; stop that process or pick another port "
                             f"(see `pulse stack up --help`)")
    progress(f"resolving {svc.name} {svc.version} (Maven Central, cached)")
    downloaded = svc.install()
    launch = svc.prepare()
    progress(f"starting {svc.name}")
    proc = svc.process.start(launch.argv, env=launch.env, cwd=launch.cwd, user=launch.user)
    return svc, t0, downloaded, proc


def _wait_healthy(launched: list[tuple[Service, float, bool, subprocess.Popen[bytes] | None]]) -> list[UpResult]:
    results = []
    for svc, t0, downloaded, proc in launched:
        # while starting, ask the process handle: its command line may not show our marker yet (exec pending)
        alive = (lambda p=proc: p.poll() is None) if proc else (lambda s=svc: s.process.pid() is not None)
        wait_until(svc.healthy, timeout=svc.start_timeout, alive=alive, what=svc.name, log_tail=svc.process.log_tail)
        results.append(UpResult(svc.name, svc.address, proc is not None, downloaded, time.monotonic() - t0))
    return results


def down(settings: Settings) -> list[tuple[str, bool]]:
    """Stop exactly the processes `up` started (from their pid files); Elasticsearch first, then Kafka's nodes."""
    es = ElasticsearchService(settings)
    stopped = [(es.name, es.process.stop())]
    # A cluster's nodes stop together: stopped one after another, the last ones wait for a quorum that is gone.
    nodes = brokers(settings)
    with ThreadPoolExecutor(len(nodes)) as pool:
        return stopped + list(zip((node.name for node in nodes), pool.map(lambda n: n.process.stop(), nodes),
                                  strict=True))


def status(settings: Settings) -> list[ServiceStatus]:
    out = []
    for svc in services(settings):
        pid = svc.process.pid()
        out.append(ServiceStatus(svc.name, svc.version, svc.address, pid, pid is not None and svc.healthy()))
    return out
