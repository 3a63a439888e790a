"""What a secure local stack needs: a CA and a server certificate made on the spot with openssl, random
passwords, and the ``PULSE_*`` lines that point every Pulse command at it.

Everything lives under ``<home>/secure/`` (mode 0700); a home that has it runs its broker with a SASL_SSL
listener (SCRAM-SHA-512) and its node with TLS and authentication. Secrets stay in files and reach programs as
files (``*_FILE`` variables, ``-passout file:``, Java ``@argfiles``), never on a command line.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pulse.errors import StackError

KAFKA_USER = "pulse"
"""The SCRAM user every Pulse client authenticates as."""
BROKER_USER = "broker"
"""The SCRAM user the broker uses on its own listener (transaction markers go through it)."""
ES_USER = "pulse"
"""The Elasticsearch user (file realm) Pulse authenticates as."""
SCRAM = "SCRAM-SHA-512"
DAYS = 825


@dataclass(frozen=True)
class SecureMaterial:
    """Certificates and passwords of one Pulse home's secure stack."""

    dir: Path

    @classmethod
    def of(cls, home: Path) -> SecureMaterial:
        return cls(home / "secure")

    def exists(self) -> bool:
        return (self.dir / "server.crt").exists()

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def keystore(self) -> Path:
        """The broker's PKCS12 keystore (server key and certificate chain)."""
        return self.dir / "kafka.p12"

    def secret_file(self, name: str) -> Path:
        """A secret's file: ``keystore``, ``kafka`` (Pulse's SCRAM password), ``broker`` or ``es`` (Pulse's
        Elasticsearch password)."""
        return self.dir / f"{name}.secret"

    def secret(self, name: str) -> str:
        return self.secret_file(name).read_text().strip()

    def write_secret(self, name: str, value: str) -> None:
        path = self.secret_file(name)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(value)  # no newline: Kafka's DirectoryConfigProvider takes a file's bytes as they are

    def create(self, hosts: tuple[str, ...] = ("localhost",), extra_secrets: tuple[str, ...] = (),
               shared: bool = False) -> None:
        """Make the CA, the server certificate (127.0.0.1 and ``hosts``), the keystore and every password
        (``extra_secrets`` too), unless already made. ``shared``: the files (not the CA key) readable by anyone
        who can enter the directory (0700), for containers that run as other users (Compose bind-mounts them)."""
        if self.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        for name in ("keystore", "kafka", "broker", "es", *extra_secrets):
            self.write_secret(name, secrets.token_urlsafe(24))
        ext = self.dir / "server.ext"
        names = ",".join(f"DNS:{host}" for host in hosts)
        ext.write_text(f"subjectAltName=IP:127.0.0.1,{names}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
        ca_key, csr = self.dir / "ca.key", self.dir / "server.csr"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", self.ca_cert,
                 "-days", str(DAYS), "-subj", "/CN=Pulse local CA",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.server_key, "-out", csr,
                 "-subj", "/CN=localhost")
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                 "-out", self.dir / "server.tmp", "-days", str(DAYS), "-extfile", ext)
        _openssl("pkcs12", "-export", "-in", self.dir / "server.tmp", "-inkey", self.server_key, "-certfile",
                 self.ca_cert, "-name", "kafka", "-out", self.keystore,
                 "-passout", f"file:{self.secret_file('keystore')}")
        ca_key.chmod(0o600)
        for path in (self.server_key, self.keystore):
            path.chmod(0o644 if shared else 0o600)
        if shared:
            for name in ("keystore", "kafka", "broker", "es", *extra_secrets):
                self.secret_file(name).chmod(0o644)
        csr.unlink()
        ext.unlink()
        (self.dir / "server.tmp").rename(self.server_cert)  # last: its presence means "made"

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users (for an argfile, never argv)."""
        return [arg for user, secret in ((KAFKA_USER, "kafka"), (BROKER_USER, "broker"))
                for arg in ("--add-scram", f"{SCRAM}=[name={user},password={self.secret(secret)}]")]

    def kafka_client_properties(self) -> dict[str, str]:
        """librdkafka properties of a Pulse client on this stack's broker."""
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM, "sasl.username": KAFKA_USER,
                "sasl.password": self.secret("kafka"), "ssl.ca.location": str(self.ca_cert)}

    def client_env(self, bootstrap: str, es_url: str) -> dict[str, str]:
        """``PULSE_*`` variables that point every Pulse command at this stack; secrets as ``*_FILE``."""
        env = {"PULSE_BOOTSTRAP": bootstrap, "PULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "PULSE_KAFKA_SASL_MECHANISM": SCRAM, "PULSE_KAFKA_SASL_USERNAME": KAFKA_USER,
               "PULSE_KAFKA_SASL_PASSWORD_FILE": str(self.secret_file("kafka")),
               "PULSE_KAFKA_SSL_CA_LOCATION": str(self.ca_cert), "PULSE_ES_URL": es_url,
               "PULSE_ES_CA_CERT": str(self.ca_cert)}
        return env | {"PULSE_ES_USERNAME": ES_USER, "PULSE_ES_PASSWORD_FILE": str(self.secret_file("es"))}


def _openssl(*args: str | Path) -> None:
    try:
        proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False,
                              timeout=60)
    except FileNotFoundError:
        raise StackError("the secure stack makes its certificates with openssl, which is not installed "
                         "(apt-get install openssl)") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"making the secure stack's certificates with openssl failed: {tail[0]}")
