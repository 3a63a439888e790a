"""Duration options (grace, intervals, timeouts), in the one spelling of :mod:`pulse.durations`."""

from __future__ import annotations

import click

from pulse.durations import parse_seconds, spell

__all__ = ["Duration", "parse_seconds", "spell"]

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
