"""One spelling for every duration an option takes (grace, intervals, timeouts): ``500ms``, ``1.5s``, ``5m``,
``1h``, ``1d``; a bare number is seconds."""

from __future__ import annotations

import re

import click

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")


def parse_seconds(text: str) -> float:
    """``'1.5s'`` → 1.5; raises ValueError with the accepted spelling."""
    match = _SPEC.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (write e.g. 500ms, 30s, 5m, 1h; a bare number is seconds)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def spell(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` (for defaults in --help)."""
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and (seconds / _UNITS[unit]).is_integer():
            return f"{int(seconds / _UNITS[unit])}{unit}"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


class Duration(click.ParamType):
    """A duration option: seconds as a float, or whole milliseconds with ``ms=True``; within the bounds."""

    name = "duration"

    def __init__(self, minimum: float = 0.0, maximum: float | None = None, ms: bool = False) -> None:
        self.minimum, self.maximum, self.ms = minimum, maximum, ms

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float | int:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value) / (1000 if self.ms else 1)  # an already converted default
        else:
            try:
                seconds = parse_seconds(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if seconds < self.minimum or (self.maximum is not None and seconds > self.maximum):
            bound = f"between {spell(self.minimum)} and {spell(self.maximum)}" if self.maximum is not None \
                else f"at least {spell(self.minimum)}"
            self.fail(f"{value!r} must be {bound}", param, ctx)
        return round(seconds * 1000) if self.ms else seconds

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "DURATION"
