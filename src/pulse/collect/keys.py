"""Write keys: which clients may send events, and from which web origins.

A key is public (it ships in a page) but scoped: it names the origins whose pages may use it, so a page elsewhere
cannot send with it through a visitor's browser. The format, in ``PULSE_COLLECT_KEYS`` or one key per line of a
file: ``KEY=ORIGIN,ORIGIN`` (``*`` for any origin; ``KEY`` alone: no browser origin, servers only).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from pulse.errors import PulseError

ANY_ORIGIN = "*"


@dataclass(frozen=True)
class WriteKey:
    secret: str
    origins: frozenset[str]

    def allows(self, origin: str | None) -> bool:
        """No Origin header: not a browser's cross-origin request (a server, curl), allowed."""
        return origin is None or ANY_ORIGIN in self.origins or origin in self.origins

    def __repr__(self) -> str:  # never print the key itself
        return f"WriteKey(origins={sorted(self.origins)})"


@dataclass(frozen=True)
class Keys:
    keys: tuple[WriteKey, ...]

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def find(self, secret: str | None) -> WriteKey | None:
        if secret is None:
            return None
        found = None
        for key in self.keys:  # compare with every key in constant time, so timing tells nothing
            if hmac.compare_digest(key.secret.encode(), secret.encode()):
                found = key
        return found

    def origin_known(self, origin: str) -> bool:
        """Whether any key allows ``origin`` (a preflight carries no key to look up)."""
        return not self.required or any(k.allows(origin) for k in self.keys)


def parse(text: str, where: str) -> Keys:
    """Keys from ``text`` (lines or ``;``-separated entries; ``#`` starts a comment)."""
    keys = []
    for n, entry in enumerate(text.replace(";", "\n").splitlines(), 1):
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        secret, _, origins = entry.partition("=")
        secret = secret.strip()
        if len(secret) < 8:
            raise PulseError(f"{where}, entry {n}: a write key needs at least 8 characters")
        names = frozenset(o.strip().rstrip("/") for o in origins.split(",") if o.strip())
        for origin in names - {ANY_ORIGIN}:
            if not origin.startswith(("http://", "https://")):
                raise PulseError(f"{where}, entry {n}: origin {origin!r} is not http(s)://host[:port]")
        keys.append(WriteKey(secret, names))
    return Keys(tuple(keys))


def load(inline: str | None, file: Path | None) -> Keys:
    """Keys from the option or variable, and from the file; none at all: no key is asked for."""
    keys: list[WriteKey] = []
    if inline:
        keys += parse(inline, "PULSE_COLLECT_KEYS").keys
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise PulseError(f"cannot read the write keys file {file}: {exc.strerror}") from None
        keys += parse(text, str(file)).keys
    return Keys(tuple(keys))
