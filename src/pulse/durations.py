"""One spelling for every duration Pulse reads (option values, window sizes, "2h ago"): ``500ms``, ``1.5s``,
``5m``, ``1h``, ``1d``; a bare number is seconds. Pure functions; `pulse.cli.durations` makes options of them."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
HOW = "write e.g. 500ms, 30s, 5m, 1h; a bare number is seconds"


def parse_seconds(text: str) -> float:
    """``'1.5s'`` → 1.5; raises ValueError with the accepted spelling."""
    match = _SPEC.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration ({HOW})")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_ms(text: str) -> int:
    """A positive duration in whole milliseconds (window sizes, intervals of event time): ``'10s'`` → 10000."""
    ms = parse_seconds(text) * 1000
    if ms <= 0 or abs(ms - round(ms)) > 1e-6:
        raise ValueError(f"{text!r} is not a positive whole number of milliseconds ({HOW})")
    return round(ms)


def spell(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` (for defaults in --help)."""
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and (seconds / _UNITS[unit]).is_integer():
            return f"{int(seconds / _UNITS[unit])}{unit}"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
