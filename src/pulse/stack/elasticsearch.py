"""Elasticsearch as a single local node from the Maven Central integ-test distribution.

Elasticsearch refuses to run as root, so when Pulse runs as root it creates (once) and uses a dedicated
system user that owns only the node's config, data, logs and temp directories.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from pulse.connect.elasticsearch import EsConnection
from pulse.connect.secrets import Secret
from pulse.errors import PulseError, StackError
from pulse.stack import artifacts
from pulse.stack.secure import ES_USER, SecureMaterial
from pulse.stack.service import Launch, Service, base_env, java_home

PULSE_ROLE = f"""# Written by `pulse stack up --secure`: what Pulse's user may do.
{ES_USER}:
  cluster: [monitor, manage_index_templates]
  indices:
    - names: ["*"]
      privileges: [all]
"""


class ElasticsearchService(Service):
    name = "elasticsearch"
    start_timeout = 150.0

    @property
    def conf_dir(self) -> Path:
        return self.dir / "config"

    @property
    def cmdline_marker(self) -> str:
        # the launcher script only gets its configuration through the environment, so put the marker on its
        # command line as a harmless custom node attribute
        return f"-Enode.attr.pulse_home={self.dir}"

    @property
    def ports(self) -> list[int]:
        return [self.settings.es_port, self.settings.es_transport_port]

    @property
    def address(self) -> str:
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{self.settings.es_port}"

    @property
    def secure(self) -> SecureMaterial | None:
        material = SecureMaterial.of(self.settings.home)
        return material if material.exists() else None

    def connection(self) -> EsConnection:
        """The stack's own connection: as Pulse's user over TLS on a secure stack."""
        if not (material := self.secure):
            return EsConnection(hosts=(self.address,))
        return EsConnection(hosts=(self.address,), username=ES_USER, password=Secret(material.secret("es")),
                            ca_certs=str(material.ca_cert))

    @property
    def version(self) -> str:
        return self.settings.es_version

    def install(self) -> bool:
        return artifacts.elasticsearch_dist(self.settings)[1]

    def _elasticsearch_yml(self) -> str:
        s = self.settings
        return "\n".join([
            "# Written by `pulse stack up`; edit Pulse settings (PULSE_*), not this file.",
            "cluster.name: pulse",
            "node.name: pulse-1",
            f"path.data: {self.dir / 'data'}",
            f"path.logs: {self.dir / 'logs'}",
            "network.host: 127.0.0.1",
            f"http.port: {s.es_port}",
            f"transport.port: {s.es_transport_port}",
            "discovery.type: single-node",
            *self._security_settings(),
            # A developer disk is often fuller than a production one; do not go read-only at 90 %.
            "cluster.routing.allocation.disk.threshold_enabled: false",
            "action.destructive_requires_name: false",
            "",
        ])

    def _security_settings(self) -> list[str]:
        if not self.secure:
            return ["xpack.security.enabled: false"]
        return [
            "xpack.security.enabled: true",
            "xpack.security.http.ssl.enabled: true",
            "xpack.security.http.ssl.key: tls/server.key",
            "xpack.security.http.ssl.certificate: tls/server.crt",
            "xpack.security.http.ssl.certificate_authorities: [tls/ca.crt]",
        ]

    def _install_secure_material(self, env: dict[str, str]) -> None:
        """The node's certificate (it reads only files in its config directory), Pulse's role, and Pulse's user
        in the file realm (the integ-test build cannot create the security index, so there are no native users
        or API keys); the password reaches the users tool on stdin."""
        material = self.secure
        if not material:
            return
        tls = self.conf_dir / "tls"
        tls.mkdir(exist_ok=True)
        for src in (material.server_key, material.server_cert, material.ca_cert):
            shutil.copyfile(src, tls / src.name)
            (tls / src.name).chmod(0o600)
        (self.conf_dir / "roles.yml").write_text(PULSE_ROLE)
        users = self.conf_dir / "users"
        if not (users.exists() and any(line.startswith(f"{ES_USER}:") for line in users.read_text().splitlines())):
            password = material.secret("es")
            _run_tool([str(self.dist_bin / "elasticsearch-users"), "useradd", ES_USER, "-r", ES_USER], env,
                      f"{password}\n{password}\n")

    def prepare(self) -> Launch:
        dist, _ = artifacts.elasticsearch_dist(self.settings)
        user = self._service_user()
        for sub in ("data", "logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if not (self.conf_dir / "jvm.options").exists():
            shutil.copytree(dist / "config", self.conf_dir, dirs_exist_ok=True)
        (self.conf_dir / "elasticsearch.yml").write_text(self._elasticsearch_yml())
        env = base_env() | {
            "ES_JAVA_HOME": str(java_home()),
            "ES_PATH_CONF": str(self.conf_dir),
            "ES_TMPDIR": str(self.dir / "tmp"),
        }
        self._install_secure_material(env)
        heap = self.settings.es_heap
        (self.conf_dir / "jvm.options.d").mkdir(exist_ok=True)
        (self.conf_dir / "jvm.options.d" / "pulse-heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")
        if user:
            _check_traversable(dist, user)
            _check_traversable(self.dir, user)
            subprocess.run(["chown", "-R", user, str(self.conf_dir), *(str(self.dir / d) for d in
                            ("data", "logs", "tmp"))], check=True)
        return Launch(argv=[str(dist / "bin" / "elasticsearch"), self.cmdline_marker], env=env, cwd=self.dir, user=user)

    def _service_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        name = self.settings.es_user
        try:
            pwd.getpwnam(name)
        except KeyError:
            proc = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                                   name], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise StackError(f"Elasticsearch cannot run as root and creating user {name!r} failed: "
                                 f"{proc.stderr.strip()}") from None
        return name

    @property
    def dist_bin(self) -> Path:
        return artifacts.elasticsearch_dist(self.settings)[0] / "bin"

    def healthy(self) -> bool:
        try:
            return self.connection().status(timeout=2.0) in {"green", "yellow"}
        except PulseError:
            return False


def _run_tool(argv: list[str], env: dict[str, str], stdin: str) -> None:
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"{Path(argv[0]).name} {argv[1]} failed: {tail[0]}")


def cluster_status(url: str, timeout: float = 2.0) -> str | None:
    """The cluster health colour at ``url``, or None if nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=timeout) as resp:
            return json.load(resp).get("status")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _check_traversable(path: Path, user: str) -> None:
    """The service user must be able to reach ``path``: every parent needs the others' execute bit."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise StackError(f"Elasticsearch runs as user {user!r}, which cannot enter {parent} "
                             f"(mode {oct(parent.stat().st_mode & 0o777)}); choose a Pulse home it can "
                             f"reach with --home or PULSE_HOME, or chmod o+x {parent}")
