"""The Elasticsearch connection: one or more URLs or a cloud id; basic auth or an API key; a CA certificate and
TLS verification. Every Elasticsearch client of a process is made here, and only :attr:`EsConnection.display`
(no credentials) ever appears in output.

Variables: ``PULSE_ES_URL`` (comma-separated; credentials written into a URL are taken out of it and used as
basic auth), ``PULSE_ES_USERNAME``, ``PULSE_ES_PASSWORD``, ``PULSE_ES_API_KEY``, ``PULSE_ES_CLOUD_ID``,
``PULSE_ES_CA_CERT`` (a PEM file), ``PULSE_ES_VERIFY_CERTS`` (true/false); secrets also as ``*_FILE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pulse.connect.secrets import Secret, read_secret
from pulse.errors import PulseError

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class EsConnection:
    hosts: tuple[str, ...] = ()
    username: str | None = None
    password: Secret | None = None
    api_key: Secret | None = None
    cloud_id: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str], default_url: str) -> EsConnection:
        urls = [u.strip() for u in (env.get("PULSE_ES_URL") or default_url).split(",") if u.strip()]
        hosts, username, password = [], env.get("PULSE_ES_USERNAME") or None, read_secret(env, "PULSE_ES_PASSWORD")
        for url in urls:
            host, user, secret = _split_credentials(url)
            hosts.append(host)
            username, password = username or user, password or secret
        verify = (env.get("PULSE_ES_VERIFY_CERTS") or "true").lower()
        if verify not in TRUE | FALSE:
            raise PulseError(f"PULSE_ES_VERIFY_CERTS must be true or false, got {verify!r}")
        api_key = read_secret(env, "PULSE_ES_API_KEY")
        if api_key is not None and (username or password):
            raise PulseError("give Elasticsearch either a user and password or an API key, not both")
        cloud_id = env.get("PULSE_ES_CLOUD_ID") or None
        return cls(hosts=() if cloud_id and not env.get("PULSE_ES_URL") else tuple(hosts), username=username,
                   password=password, api_key=api_key, cloud_id=cloud_id, ca_certs=env.get("PULSE_ES_CA_CERT") or None,
                   verify_certs=verify in TRUE)

    @property
    def display(self) -> str:
        """Where it connects, for messages: never a credential."""
        return f"cloud id {self.cloud_id.split(':', 1)[0]}" if self.cloud_id else ", ".join(self.hosts)

    def client(self, **options: Any) -> Any:
        """A new ``elasticsearch.Elasticsearch`` client; ``options`` are the client's own (timeouts, retries)."""
        from elasticsearch import Elasticsearch

        auth: dict[str, Any] = {}
        if self.api_key is not None:
            auth["api_key"] = self.api_key.reveal()
        elif self.username is not None or self.password is not None:
            auth["basic_auth"] = (self.username or "", self.password.reveal() if self.password else "")
        tls: dict[str, Any] = {}
        if self.ca_certs:
            tls["ca_certs"] = self.ca_certs
        if not self.verify_certs:
            tls |= {"verify_certs": False, "ssl_show_warn": False}
        where: dict[str, Any] = {"cloud_id": self.cloud_id} if self.cloud_id else {"hosts": list(self.hosts)}
        return Elasticsearch(**where, **auth, **tls, **options)

    def status(self, timeout: float = 5.0) -> str | None:
        """The cluster health colour, through a client with these credentials; None if nothing answers. Refused
        credentials are an operator mistake, said in one line."""
        from elasticsearch import ApiError, AuthenticationException, AuthorizationException, TransportError

        try:
            health = self.client(request_timeout=timeout, max_retries=0).cluster.health()
        except AuthenticationException:
            raise PulseError(f"Elasticsearch at {self.display} refused the credentials (401): check "
                             "PULSE_ES_USERNAME/PASSWORD or PULSE_ES_API_KEY") from None
        except AuthorizationException:
            raise PulseError(f"Elasticsearch at {self.display} accepted the credentials but refused the cluster "
                             "health request (403): the user lacks the monitor privilege") from None
        except (TransportError, ApiError):
            return None
        return str(health.get("status"))


def problem(connection: EsConnection, timeout: float = 2.0) -> str | None:
    """None if the cluster answers healthy (green or yellow) with these credentials, else why not, in one line."""
    try:
        colour = connection.status(timeout)
    except PulseError as exc:
        return str(exc)
    if colour in {"green", "yellow"}:
        return None
    return f"Elasticsearch at {connection.display} " + (f"is {colour}" if colour else "does not answer")


def _split_credentials(url: str) -> tuple[str, str | None, Secret | None]:
    """``url`` without the credentials written into it, and those credentials."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username else None
    return clean, user, Secret(unquote(parts.password)) if parts.password else None
