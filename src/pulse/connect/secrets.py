"""Secrets from the environment or from files (the Docker secrets convention), and a type that never shows them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pulse.errors import PulseError


class Secret:
    """A password or key: printing, logging or formatting it shows ``***``; only :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_secret(env: Mapping[str, str], name: str) -> Secret | None:
    """``env[name]``, or the contents of the file named by ``env[name + "_FILE"]`` (one trailing newline
    dropped); None if neither is set. Both set is an operator mistake."""
    value, path = env.get(name), env.get(f"{name}_FILE")
    if value and path:
        raise PulseError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PulseError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        return Secret(text[:-1] if text.endswith("\n") else text)
    return Secret(value) if value else None
